package config

import (
	"fmt"
	"strconv"
	"strings"
	"time"

	"gopkg.in/yaml.v3"
)

// Duration is a time.Duration written as Go does ("90s", "720h") or in
// days ("30d").
type Duration time.Duration

// Set parses s.
func (d *Duration) Set(s string) error {
	s = strings.TrimSpace(s)
	if s == "0" {
		*d = 0
		return nil
	}
	if n, ok := strings.CutSuffix(s, "d"); ok {
		days, err := strconv.ParseFloat(n, 64)
		if err != nil {
			return fmt.Errorf("%q is not a duration", s)
		}
		*d = Duration(days * float64(24*time.Hour))
		return nil
	}
	v, err := time.ParseDuration(s)
	if err != nil {
		return fmt.Errorf("%q is not a duration (write e.g. 90s, 720h or 30d)", s)
	}
	*d = Duration(v)
	return nil
}

// String writes a week or more of whole days in days ("30d") and anything
// shorter as Go does, without zero units ("72h", "15s", "1h30m"), so that
// the defaults read as the docs write them.
func (d Duration) String() string {
	const day = 24 * time.Hour
	v := time.Duration(d)
	if v >= 7*day && v%day == 0 {
		return strconv.FormatInt(int64(v/day), 10) + "d"
	}
	s := v.String()
	if strings.HasSuffix(s, "m0s") {
		s = strings.TrimSuffix(s, "0s")
	}
	if strings.HasSuffix(s, "h0m") {
		s = strings.TrimSuffix(s, "0m")
	}
	return s
}

// UnmarshalYAML reads a duration string.
func (d *Duration) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind != yaml.ScalarNode {
		return fmt.Errorf("line %d: a duration must be a string like 720h or 30d", n.Line)
	}
	if err := d.Set(n.Value); err != nil {
		return fmt.Errorf("line %d: %w", n.Line, err)
	}
	return nil
}

// Size is a byte count written as a number or with a unit: B, KB/KiB/K
// (1024), MB/MiB/M (1024²). Units are case-insensitive.
type Size int64

var sizeUnits = []struct {
	suffix string
	mult   int64
}{
	{"kib", 1 << 10}, {"mib", 1 << 20}, {"kb", 1 << 10}, {"mb", 1 << 20}, {"k", 1 << 10}, {"m", 1 << 20}, {"b", 1},
}

// Set parses s.
func (z *Size) Set(s string) error {
	t := strings.ToLower(strings.TrimSpace(s))
	mult := int64(1)
	for _, u := range sizeUnits {
		if n, ok := strings.CutSuffix(t, u.suffix); ok {
			t, mult = strings.TrimSpace(n), u.mult
			break
		}
	}
	n, err := strconv.ParseInt(t, 10, 64)
	if err != nil || n < 0 || n > (1<<40)/mult {
		return fmt.Errorf("%q is not a size (write e.g. 100KiB or 1MiB)", s)
	}
	*z = Size(n * mult)
	return nil
}

func (z Size) String() string {
	switch {
	case z != 0 && z%(1<<20) == 0:
		return strconv.FormatInt(int64(z)>>20, 10) + "MiB"
	case z != 0 && z%(1<<10) == 0:
		return strconv.FormatInt(int64(z)>>10, 10) + "KiB"
	}
	return strconv.FormatInt(int64(z), 10) + "B"
}

// UnmarshalYAML reads a size.
func (z *Size) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind != yaml.ScalarNode {
		return fmt.Errorf("line %d: a size must be a number or a string like 100KiB", n.Line)
	}
	if err := z.Set(n.Value); err != nil {
		return fmt.Errorf("line %d: %w", n.Line, err)
	}
	return nil
}
