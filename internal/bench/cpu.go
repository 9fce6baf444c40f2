package bench

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// clockTicks is USER_HZ, the unit of /proc/<pid>/stat's CPU times: 100 on
// every Linux architecture Go runs on (the kernel converts to it whatever
// its own HZ).
const clockTicks = 100

// ProcessCPU is the CPU time (user plus system) the process pid has used,
// its threads that ended included, from /proc/<pid>/stat. Its resolution
// is 10 ms: measure over thousands of events.
func ProcessCPU(pid int) (time.Duration, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, fmt.Errorf("server cpu: %w", err)
	}
	// The command (field 2) is in parentheses and may hold spaces; the
	// fields counted from 3 follow the last ')'.
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0, fmt.Errorf("server cpu: /proc/%d/stat unreadable", pid)
	}
	f := strings.Fields(string(b[i+1:]))
	// utime and stime are fields 14 and 15: 11 and 12 after field 3.
	if len(f) < 13 {
		return 0, fmt.Errorf("server cpu: /proc/%d/stat has %d fields", pid, len(f)+2)
	}
	var ticks int64
	for _, s := range f[11:13] {
		n, err := strconv.ParseInt(s, 10, 64)
		if err != nil {
			return 0, fmt.Errorf("server cpu: /proc/%d/stat: %w", pid, err)
		}
		ticks += n
	}
	return time.Duration(ticks) * time.Second / clockTicks, nil
}

// ServerPID is the pid that a server running with data directory dir
// wrote to its run.json.
func ServerPID(dir string) (int, error) {
	b, err := os.ReadFile(filepath.Join(dir, "run.json"))
	if err != nil {
		return 0, fmt.Errorf("server pid: %w (is a server running with --data-dir %s?)", err, dir)
	}
	var run struct {
		PID int `json:"pid"`
	}
	if err := json.Unmarshal(b, &run); err != nil || run.PID <= 0 {
		return 0, fmt.Errorf("server pid: %s has no pid", filepath.Join(dir, "run.json"))
	}
	return run.PID, nil
}

// pace returns, for a load of rate requests per second from start, when
// each request goes out: the n-th (from 0) at start + n/rate, whatever the
// latency of the others (an open loop). Zero rate: at once.
func pace(start time.Time, rate float64) func(n int64) time.Time {
	if rate <= 0 {
		return nil
	}
	return func(n int64) time.Time { return start.Add(time.Duration(float64(n) / rate * float64(time.Second))) }
}
