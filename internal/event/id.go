package event

import (
	"fmt"
	"strconv"
	"sync"
	"time"
)

// Layout of a flake id, as the original implementation produces it:
// 42 bits of Unix milliseconds, 10 bits of worker id, 12 bits of sequence.
const (
	workerBits = 10
	seqBits    = 12
	timeShift  = workerBits + seqBits
	// MaxWorker is the largest worker id a Generator accepts.
	MaxWorker = 1<<workerBits - 1
	maxSeq    = 1<<seqBits - 1
)

// ID is a 64-bit, time-ordered flake id. In JSON it is a decimal string,
// because 64-bit integers do not survive JavaScript numbers.
type ID uint64

// String returns the decimal form.
func (id ID) String() string { return strconv.FormatUint(uint64(id), 10) }

// Millis returns the Unix milliseconds encoded in the id.
func (id ID) Millis() int64 { return int64(uint64(id) >> timeShift) }

// Time returns the instant encoded in the id.
func (id ID) Time() time.Time { return time.UnixMilli(id.Millis()) }

// Worker returns the worker id encoded in the id.
func (id ID) Worker() int { return int(uint64(id) >> seqBits & MaxWorker) }

// Seq returns the sequence number encoded in the id.
func (id ID) Seq() int { return int(uint64(id) & maxSeq) }

// FirstIDAt returns the smallest id any generator can produce at or after t.
func FirstIDAt(t time.Time) ID {
	ms := t.UnixMilli()
	if ms < 0 {
		return 0
	}
	return ID(uint64(ms) << timeShift)
}

// AppendJSON appends the id as a JSON string.
func (id ID) AppendJSON(dst []byte) []byte {
	dst = append(dst, '"')
	dst = strconv.AppendUint(dst, uint64(id), 10)
	return append(dst, '"')
}

// MarshalJSON writes the id as a decimal string.
func (id ID) MarshalJSON() ([]byte, error) { return id.AppendJSON(nil), nil }

// UnmarshalJSON accepts a decimal string or a bare integer.
func (id *ID) UnmarshalJSON(b []byte) error {
	s := string(b)
	if len(s) >= 2 && s[0] == '"' && s[len(s)-1] == '"' {
		s = s[1 : len(s)-1]
	}
	v, err := ParseID(s)
	if err != nil {
		return err
	}
	*id = v
	return nil
}

// ParseID parses the decimal form of an id.
func ParseID(s string) (ID, error) {
	// Ids are 63 bits (the logs store them as signed 64-bit integers): a
	// larger number would wrap and read as a position before the start.
	v, err := strconv.ParseUint(s, 10, 63)
	if err != nil {
		return 0, fmt.Errorf("id %q is not a decimal integer from 0 to 9223372036854775807", s)
	}
	return ID(v), nil
}

// Generator hands out flake ids. It is safe for concurrent use. Ids are
// strictly increasing for one generator even when the clock steps back: the
// generator keeps its own logical clock, which never moves backwards, and
// borrows the next millisecond when a millisecond's 4096 sequence numbers
// are used up.
type Generator struct {
	now    func() time.Time
	worker uint64

	mu   sync.Mutex
	last int64 // logical Unix ms of the last id
	seq  uint64
}

// NewGenerator returns a generator for worker (0..1023). now is the clock;
// nil means time.Now.
func NewGenerator(worker int, now func() time.Time) (*Generator, error) {
	if worker < 0 || worker > MaxWorker {
		return nil, fmt.Errorf("worker id %d out of range 0..%d", worker, MaxWorker)
	}
	if now == nil {
		now = time.Now
	}
	return &Generator{now: now, worker: uint64(worker)}, nil
}

// Next returns a new id, greater than every id this generator returned or
// observed before.
func (g *Generator) Next() ID {
	ms := g.now().UnixMilli()
	g.mu.Lock()
	if ms < g.last {
		ms = g.last // clock stepped back: keep the logical clock
	}
	if ms == g.last {
		g.seq++
		if g.seq > maxSeq {
			ms++
			g.seq = 0
		}
	} else {
		g.seq = 0
	}
	g.last = ms
	id := ID(uint64(ms)<<timeShift | g.worker<<seqBits | g.seq)
	g.mu.Unlock()
	return id
}

// Observe makes every later id greater than id, whatever worker produced
// it. The log calls it with the largest stored id on open, so that ids stay
// unique and ordered across restarts and a clock that stepped back.
func (g *Generator) Observe(id ID) {
	ms := id.Millis()
	g.mu.Lock()
	if ms > g.last || (ms == g.last && g.seq < maxSeq) {
		g.last = ms
		g.seq = maxSeq // the next id borrows the following millisecond
	}
	g.mu.Unlock()
}
