package event

import (
	"encoding/json"
	"sync"
	"testing"
	"time"
)

// fakeClock is a settable clock for the generator.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *fakeClock) Now() time.Time  { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *fakeClock) Set(t time.Time) { c.mu.Lock(); c.t = t; c.mu.Unlock() }

func TestIDLayoutMatchesSeed(t *testing.T) {
	// Seed 001: id 6462464730849083393 was made at time 1540771658623.
	id := ID(6462464730849083393)
	if got := id.Millis(); got != 1540771658623 {
		t.Fatalf("Millis = %d, want 1540771658623", got)
	}
	if id.Seq() != 1 {
		t.Fatalf("Seq = %d, want 1", id.Seq())
	}
	uid := ID(6462464730849083392)
	if uid.Millis() != id.Millis() || uid.Seq() != 0 {
		t.Fatalf("uid %d: ms %d seq %d", uid, uid.Millis(), uid.Seq())
	}
}

func TestGeneratorFields(t *testing.T) {
	clk := &fakeClock{t: time.UnixMilli(1540771658623)}
	g, err := NewGenerator(517, clk.Now)
	if err != nil {
		t.Fatal(err)
	}
	a, b := g.Next(), g.Next()
	if a.Millis() != 1540771658623 || a.Worker() != 517 || a.Seq() != 0 {
		t.Fatalf("a = ms %d worker %d seq %d", a.Millis(), a.Worker(), a.Seq())
	}
	if b.Seq() != 1 || b.Millis() != a.Millis() {
		t.Fatalf("b = ms %d seq %d", b.Millis(), b.Seq())
	}
	clk.Set(clk.Now().Add(time.Millisecond))
	c := g.Next()
	if c.Seq() != 0 || c.Millis() != a.Millis()+1 {
		t.Fatalf("c = ms %d seq %d", c.Millis(), c.Seq())
	}
}

func TestGeneratorRejectsBadWorker(t *testing.T) {
	for _, w := range []int{-1, 1024, 5000} {
		if _, err := NewGenerator(w, nil); err == nil {
			t.Errorf("worker %d accepted", w)
		}
	}
}

func TestGeneratorClockStepsBack(t *testing.T) {
	clk := &fakeClock{t: time.UnixMilli(2_000_000_000_000)}
	g, _ := NewGenerator(1, clk.Now)
	prev := g.Next()
	clk.Set(clk.Now().Add(-time.Hour))
	for i := 0; i < 10000; i++ {
		id := g.Next()
		if id <= prev {
			t.Fatalf("id %d after %d: not increasing after the clock stepped back", id, prev)
		}
		prev = id
	}
}

func TestGeneratorSequenceOverflowBorrows(t *testing.T) {
	clk := &fakeClock{t: time.UnixMilli(2_000_000_000_000)}
	g, _ := NewGenerator(3, clk.Now)
	var prev ID
	for i := 0; i < 3*4096; i++ {
		id := g.Next()
		if id <= prev {
			t.Fatalf("id %d after %d", id, prev)
		}
		prev = id
	}
	if prev.Millis() != 2_000_000_000_002 || prev.Seq() != 4095 {
		t.Fatalf("last id: ms %d seq %d, want ms +2 seq 4095", prev.Millis(), prev.Seq())
	}
}

func TestGeneratorObserve(t *testing.T) {
	clk := &fakeClock{t: time.UnixMilli(2_000_000_000_000)}
	// An id stored by worker 1000 one second in the future (a clock that
	// later stepped back) must still be below every new id of worker 2.
	stored := ID(uint64(2_000_000_001_000)<<timeShift | 1000<<seqBits | 17)
	g, _ := NewGenerator(2, clk.Now)
	g.Observe(stored)
	if id := g.Next(); id <= stored {
		t.Fatalf("next %d not above observed %d", id, stored)
	}
	// Observing an older id changes nothing.
	before := g.Next()
	g.Observe(ID(1))
	if id := g.Next(); id <= before {
		t.Fatalf("next %d not above %d", id, before)
	}
}

func TestGeneratorConcurrentUnique(t *testing.T) {
	g, _ := NewGenerator(9, nil)
	const workers, per = 8, 20000
	out := make(chan []ID, workers)
	for w := 0; w < workers; w++ {
		go func() {
			ids := make([]ID, per)
			for i := range ids {
				ids[i] = g.Next()
			}
			out <- ids
		}()
	}
	seen := make(map[ID]bool, workers*per)
	for w := 0; w < workers; w++ {
		ids := <-out
		for i, id := range ids {
			if i > 0 && id <= ids[i-1] {
				t.Fatalf("not increasing within a goroutine: %d then %d", ids[i-1], id)
			}
			if seen[id] {
				t.Fatalf("duplicate id %d", id)
			}
			seen[id] = true
		}
	}
}

func TestIDJSON(t *testing.T) {
	id := ID(6462464730849083393)
	b, err := json.Marshal(id)
	if err != nil {
		t.Fatal(err)
	}
	if string(b) != `"6462464730849083393"` {
		t.Fatalf("marshal = %s", b)
	}
	var back ID
	if err := json.Unmarshal(b, &back); err != nil || back != id {
		t.Fatalf("unmarshal = %d, %v", back, err)
	}
	for _, bad := range []string{`"x"`, `"-1"`, `""`, `"18446744073709551616"`} {
		if err := json.Unmarshal([]byte(bad), &back); err == nil {
			t.Errorf("%s accepted", bad)
		}
	}
	if FirstIDAt(time.UnixMilli(1540771658623)).Millis() != 1540771658623 {
		t.Fatal("FirstIDAt")
	}
}
