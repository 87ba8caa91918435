package gc

import (
	"fmt"
	"strconv"
	"strings"
	"time"
)

// Schedule is a parsed cron expression, evaluated in UTC.
type Schedule struct {
	second, minute, hour, dom, month, dow uint64 // bit i set: value i matches
	domAny, dowAny                        bool   // "*" or "?": the other day field decides alone
}

var cronNames = map[string]string{
	"@yearly": "0 0 0 1 1 *", "@annually": "0 0 0 1 1 *", "@monthly": "0 0 0 1 * *",
	"@weekly": "0 0 0 * * 0", "@daily": "0 0 0 * * *", "@midnight": "0 0 0 * * *", "@hourly": "0 0 * * * *",
}

var (
	monthNames = []string{"jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"}
	dayNames   = []string{"sun", "mon", "tue", "wed", "thu", "fri", "sat"}
)

// ParseSchedule parses a cron expression: 5 fields (minute hour
// day-of-month month day-of-week), or 6 with seconds first as DTR's
// ("0 0 1 * * 0": Sundays at 01:00), or one of @yearly, @annually,
// @monthly, @weekly, @daily, @midnight, @hourly. A field is "*" (or "?" for
// the day fields), a value, a range a-b, a step */n, a-b/n or a/n, or a
// comma-separated list of those; months and weekdays may be named (jan,
// mon); weekday 7 is Sunday. As in Vixie cron, when both day fields are
// restricted a day matching either one runs.
func ParseSchedule(expr string) (Schedule, error) {
	var s Schedule
	e := strings.TrimSpace(expr)
	if named, ok := cronNames[strings.ToLower(e)]; ok {
		e = named
	}
	f := strings.Fields(e)
	switch len(f) {
	case 5:
		f = append([]string{"0"}, f...)
	case 6:
	default:
		return s, fmt.Errorf("schedule %q has %d fields: give 5 (minute hour day month weekday) or 6 (second first, as \"0 0 1 * * 0\"), or @daily, @weekly…", expr, len(f))
	}
	fields := []struct {
		name     string
		dst      *uint64
		min, max int
		names    []string
	}{
		{"second", &s.second, 0, 59, nil}, {"minute", &s.minute, 0, 59, nil}, {"hour", &s.hour, 0, 23, nil},
		{"day of month", &s.dom, 1, 31, nil}, {"month", &s.month, 1, 12, monthNames}, {"day of week", &s.dow, 0, 7, dayNames},
	}
	for i, fd := range fields {
		bits, err := parseCronField(f[i], fd.min, fd.max, fd.names)
		if err != nil {
			return s, fmt.Errorf("schedule %q: %s field %q: %w", expr, fd.name, f[i], err)
		}
		*fd.dst = bits
	}
	if s.dow&(1<<7) != 0 {
		s.dow |= 1
	}
	s.domAny = f[3] == "*" || f[3] == "?"
	s.dowAny = f[5] == "*" || f[5] == "?"
	return s, nil
}

func parseCronField(field string, lo, hi int, names []string) (uint64, error) {
	var bits uint64
	for _, part := range strings.Split(field, ",") {
		rng, stepStr, hasStep := strings.Cut(part, "/")
		step := 1
		if hasStep {
			n, err := strconv.Atoi(stepStr)
			if err != nil || n < 1 {
				return 0, fmt.Errorf("step %q: give a positive whole number", stepStr)
			}
			step = n
		}
		var from, to int
		switch {
		case rng == "*" || rng == "?":
			from, to = lo, hi
		default:
			a, b, isRange := strings.Cut(rng, "-")
			var err error
			if from, err = cronValue(a, lo, hi, names); err != nil {
				return 0, err
			}
			to = from
			if isRange {
				if to, err = cronValue(b, lo, hi, names); err != nil {
					return 0, err
				}
				if to < from {
					return 0, fmt.Errorf("range %s: the end comes before the start", rng)
				}
			} else if hasStep {
				to = hi // a/n: from a to the end
			}
		}
		for v := from; v <= to; v += step {
			bits |= 1 << uint(v)
		}
	}
	return bits, nil
}

func cronValue(s string, lo, hi int, names []string) (int, error) {
	for i, n := range names {
		if strings.EqualFold(s, n) {
			if len(names) == 12 {
				return i + 1, nil
			}
			return i, nil
		}
	}
	v, err := strconv.Atoi(s)
	if err != nil || v < lo || v > hi {
		return 0, fmt.Errorf("value %q: give a number from %d to %d", s, lo, hi)
	}
	return v, nil
}

func (s Schedule) dayMatches(t time.Time) bool {
	dom := s.dom&(1<<uint(t.Day())) != 0
	dow := s.dow&(1<<uint(t.Weekday())) != 0
	switch {
	case s.domAny && s.dowAny:
		return true
	case s.domAny:
		return dow
	case s.dowAny:
		return dom
	}
	return dom || dow
}

// Next is the first time after t (to the second, UTC) that the schedule
// matches, or the zero time when none does within five years (such as
// "0 0 30 2 *").
func (s Schedule) Next(after time.Time) time.Time {
	t := after.UTC().Truncate(time.Second).Add(time.Second)
	limit := t.Year() + 5
	for t.Year() <= limit {
		if s.month&(1<<uint(t.Month())) == 0 {
			t = time.Date(t.Year(), t.Month()+1, 1, 0, 0, 0, 0, time.UTC)
			continue
		}
		if !s.dayMatches(t) {
			t = time.Date(t.Year(), t.Month(), t.Day()+1, 0, 0, 0, 0, time.UTC)
			continue
		}
		if s.hour&(1<<uint(t.Hour())) == 0 {
			t = t.Truncate(time.Hour).Add(time.Hour)
			continue
		}
		if s.minute&(1<<uint(t.Minute())) == 0 {
			t = t.Truncate(time.Minute).Add(time.Minute)
			continue
		}
		if s.second&(1<<uint(t.Second())) == 0 {
			t = t.Add(time.Second)
			continue
		}
		return t
	}
	return time.Time{}
}
