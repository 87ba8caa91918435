package commands

import (
	"bytes"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/sirupsen/logrus"
)

// logFormatter prints DTR's log lines: "INFO[0012] Installation is complete",
// the number being seconds since the command started. logrus prints that form
// only with colours on; this prints it with or without them.
type logFormatter struct {
	start time.Time
	color bool
}

func (f *logFormatter) Format(e *logrus.Entry) ([]byte, error) {
	var b bytes.Buffer
	level := strings.ToUpper(e.Level.String())
	if len(level) > 4 {
		level = level[:4]
	}
	if f.color {
		code := 36
		switch e.Level {
		case logrus.DebugLevel, logrus.TraceLevel:
			code = 37
		case logrus.WarnLevel:
			code = 33
		case logrus.ErrorLevel, logrus.FatalLevel, logrus.PanicLevel:
			code = 31
		}
		fmt.Fprintf(&b, "\x1b[%dm%s\x1b[0m", code, level)
	} else {
		b.WriteString(level)
	}
	fmt.Fprintf(&b, "[%04d] %s", int(e.Time.Sub(f.start).Seconds()), e.Message)
	if len(e.Data) > 0 {
		keys := make([]string, 0, len(e.Data))
		for k := range e.Data {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		if pad := 44 - len(e.Message); pad > 0 {
			b.WriteString(strings.Repeat(" ", pad))
		}
		for _, k := range keys {
			fmt.Fprintf(&b, " %s=%q", k, fmt.Sprint(e.Data[k]))
		}
	}
	b.WriteByte('\n')
	return b.Bytes(), nil
}
