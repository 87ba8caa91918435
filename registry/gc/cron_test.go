package gc

import (
	"testing"
	"time"
)

func TestScheduleNext(t *testing.T) {
	at := func(s string) time.Time {
		v, err := time.Parse(time.RFC3339, s)
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
	from := at("2024-02-28T23:59:30Z") // a Wednesday, before a leap day
	tests := []struct {
		expr string
		want string
	}{
		{"0 0 1 * * 0", "2024-03-03T01:00:00Z"},   // DTR's: Sundays at 01:00, seconds first
		{"57 54 3 * * *", "2024-02-29T03:54:57Z"}, // DTR's example
		{"0 0 * * *", "2024-02-29T00:00:00Z"},     // 5 fields: daily at midnight
		{"*/15 * * * *", "2024-02-29T00:00:00Z"},
		{"30 * * * * *", "2024-02-29T00:00:30Z"},
		{"@hourly", "2024-02-29T00:00:00Z"},
		{"@weekly", "2024-03-03T00:00:00Z"},
		{"@monthly", "2024-03-01T00:00:00Z"},
		{"@yearly", "2025-01-01T00:00:00Z"},
		{"0 12 29 2 *", "2024-02-29T12:00:00Z"},
		{"0 12 * * mon-fri", "2024-02-29T12:00:00Z"},
		{"0 0 1 jan,jul *", "2024-07-01T00:00:00Z"},
		{"0 9 * * 7", "2024-03-03T09:00:00Z"},    // 7 is Sunday
		{"0 0 13 * fri", "2024-03-01T00:00:00Z"}, // Vixie: the 13th or a Friday
		{"0 0 1-5/2 * *", "2024-03-01T00:00:00Z"},
		{"0 0 ? * sun", "2024-03-03T00:00:00Z"},
	}
	for _, tc := range tests {
		s, err := ParseSchedule(tc.expr)
		if err != nil {
			t.Errorf("%q: %v", tc.expr, err)
			continue
		}
		if got := s.Next(from); !got.Equal(at(tc.want)) {
			t.Errorf("%q after %s: %s, want %s", tc.expr, from.Format(time.RFC3339), got.Format(time.RFC3339), tc.want)
		}
	}
	// Each next run is after the one before: a schedule walks forward.
	s, _ := ParseSchedule("0 */20 * * * *")
	prev := from
	for range 10 {
		n := s.Next(prev)
		if !n.After(prev) || n.Sub(prev) > 20*time.Minute {
			t.Fatalf("next after %s is %s", prev, n)
		}
		prev = n
	}
	if s, _ := ParseSchedule("0 0 30 2 *"); !s.Next(from).IsZero() {
		t.Errorf("February 30th matched")
	}
}

func TestParseScheduleRefuses(t *testing.T) {
	for _, expr := range []string{"", "* * *", "* * * * * * *", "61 * * * *", "* 24 * * *", "* * 0 * *", "* * * 13 *",
		"* * * * 8", "*/0 * * * *", "5-1 * * * *", "a * * * *", "@often", "1,,2 * * * *"} {
		if _, err := ParseSchedule(expr); err == nil {
			t.Errorf("%q accepted", expr)
		}
	}
}

func TestParseParameters(t *testing.T) {
	o, err := ParseParameters(nil)
	if err != nil || o.DryRun || o.Grace != DefaultGrace || o.Workers != DefaultWorkers {
		t.Fatalf("defaults: %+v %v", o, err)
	}
	o, err = ParseParameters(map[string]string{"dryRun": "true", "gracePeriod": "0s", "workers": "2"})
	if err != nil || !o.DryRun || o.Grace != 0 || o.Workers != 2 {
		t.Fatalf("%+v %v", o, err)
	}
	for _, p := range []map[string]string{{"dryRun": "yes"}, {"gracePeriod": "-1h"}, {"gracePeriod": "1000h"}, {"workers": "0"}, {"deleteEverything": "true"}} {
		if _, err := ParseParameters(p); err == nil {
			t.Errorf("%v accepted", p)
		}
	}
	if _, err := ParseDeadline("30m"); err != nil {
		t.Error(err)
	}
	for _, d := range []string{"0s", "-1m", "soon"} {
		if _, err := ParseDeadline(d); err == nil {
			t.Errorf("deadline %q accepted", d)
		}
	}
}
