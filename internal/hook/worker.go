package hook

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"math/rand/v2"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/expr-lang/expr"

	"github.com/sluicehq/sluice/internal/event"
	"github.com/sluicehq/sluice/internal/eventlog"
	"github.com/sluicehq/sluice/internal/sink"
)

// worker delivers one active hook: a collector follows the log from the
// hook's place and forms batches; up to max_in_flight of them are
// delivered at once; the cursor moves only past a run of batches that
// were all delivered or parked as dead letters, so it never passes one
// that is still in flight.
type worker struct {
	m      *Manager
	store  Store
	gen    int64 // of this loop (Store.Claim)
	hook   Hook
	comp   *compiled
	sink   sink.Sink
	ctx    context.Context
	cancel context.CancelFunc
	done   chan struct{}
	wg     sync.WaitGroup

	mu    sync.Mutex
	slots []*slot // batches (and idle stretches) in scan order, oldest first

	// ahead holds records read from the log past the scan position and
	// not examined yet (the rest of the last page), so a full batch does
	// not make the next one read them again.
	ahead []eventlog.Record
	// more says the last page read was full: the log may hold more after
	// it right now.
	more bool
	// unsaved is a cursor that idle stretches reached and that is not
	// written yet (idle cursors are written at most once a second).
	unsaved event.ID
}

// slot is a stretch of the log up to upTo: a batch in flight until done,
// or a stretch with nothing to send (done at once).
type slot struct {
	seq  int64
	upTo event.ID
	done bool
}

// pending is a formed batch.
type pending struct {
	seq     int64
	id      string
	records []eventlog.Record
	upTo    event.ID // the scan position when it was cut: the cursor after it
	// tries is the attempts made before this loop took the batch (stored
	// by Store.Retry): its next attempt is tries+1.
	tries int
}

func (w *worker) run() {
	defer close(w.done)
	defer w.sink.Close()
	defer w.wg.Wait() // runs first: every delivery has returned before the sink closes
	log := w.m.logger.With("hook", w.hook.ID)
	if !w.persist("claim the hook", func() error { return w.claim(w.ctx) }) {
		return
	}
	// Batches formed before a restart go first, exactly as they were.
	var inflight []*pending
	if !w.persist("load in-flight batches", func() (err error) {
		inflight, err = w.loadInflight(w.ctx)
		return err
	}) {
		return
	}
	sem := make(chan struct{}, w.hook.MaxInFlight)
	stored := max(w.hook.Cursor, w.hook.scan)
	scan, seq := stored, int64(0)
	for _, p := range inflight {
		w.track(p)
		scan, seq = max(scan, p.upTo), max(seq, p.seq)
	}
	// Batches past the last one still in flight were finished before the
	// restart: the cursor may pass them once the earlier ones are done.
	w.idle(stored)
	for _, p := range inflight {
		if !w.launch(p, sem) {
			return
		}
	}
	// Batches are recorded ahead of their places: while the batches in
	// flight are at the target, the next ones (see aheadRoom) are formed
	// and recorded in one commit, so a place that frees is taken
	// at once by a batch already recorded, and places are filled while the
	// next commit runs. A recorded batch is one the target may see: a
	// restart sends it, with its id, whether it was sent or not.
	var queued, group []*pending // recorded and waiting for a place; being recorded
	var saved chan error         // the commit of group, when one runs
	lastSave := time.Now()
	for w.ctx.Err() == nil {
		if saved == nil {
			if len(queued) == 0 {
				// Nothing waits for a place: wait for events.
				recs, upTo, err := w.collect(&scan, &lastSave)
				if err != nil {
					if w.ctx.Err() == nil {
						log.Error("read the event log", "err", err)
						w.sleep(time.Second)
					}
					continue
				}
				if len(recs) == 0 {
					continue
				}
				seq++
				group = append(group, &pending{seq: seq, id: newBatchID(), records: recs, upTo: upTo})
			}
			for w.aheadRoom(queued, group, cap(sem)) {
				recs, upTo, ok := w.ready(&scan)
				if !ok {
					break
				}
				seq++
				group = append(group, &pending{seq: seq, id: newBatchID(), records: recs, upTo: upTo})
			}
			if len(group) > 0 {
				saved = make(chan error, 1)
				w.wg.Add(1)
				go func(group []*pending) {
					defer w.wg.Done()
					saved <- w.saveInflight(w.ctx, group)
				}(group)
			}
		}
		var place chan struct{} // nil: nothing to place
		if len(queued) > 0 {
			place = sem
		}
		select {
		case <-w.ctx.Done():
			return
		case err := <-saved:
			saved = nil
			if err != nil {
				if fenced(err) {
					log.Warn("the hook was claimed by a newer delivery loop; this one stops")
					return
				}
				if w.ctx.Err() == nil {
					log.Error("save in-flight batch", "err", err)
					w.sleep(time.Second)
				}
				scan, seq, w.ahead, group = w.resumePoint(), seq-int64(len(group)), nil, nil
				continue
			}
			for _, p := range group {
				w.track(p)
			}
			queued, group = append(queued, group...), nil
		case place <- struct{}{}:
			// The first took a place; the others take the free ones.
			for {
				w.start(queued[0], sem)
				queued = queued[1:]
				if len(queued) == 0 {
					break
				}
				select {
				case sem <- struct{}{}:
					continue
				default:
				}
				break
			}
		}
	}
}

// launch waits for a free place and starts delivering p; false when the
// worker stops meanwhile.
func (w *worker) launch(p *pending, sem chan struct{}) bool {
	select {
	case sem <- struct{}{}:
	case <-w.ctx.Done():
		return false
	}
	w.start(p, sem)
	return true
}

// start delivers p on its own goroutine, which gives its place back
// when it ends; with max_in_flight above 1, once the target has accepted
// it (max_in_flight then bounds the requests open at the target, not the
// commits that end them).
func (w *worker) start(p *pending, sem chan struct{}) {
	w.wg.Add(1)
	go func() {
		defer w.wg.Done()
		var once sync.Once
		release := func() { once.Do(func() { <-sem }) }
		defer release()
		if !w.deliver(p, release) {
			w.cancel() // stopped, gone or failing: the other batches stay in flight
		}
	}()
}

// track records a batch in flight, in scan order.
func (w *worker) track(p *pending) {
	w.mu.Lock()
	w.slots = append(w.slots, &slot{seq: p.seq, upTo: p.upTo})
	w.mu.Unlock()
}

// finish marks batch seq done and returns the new cursor: the end of the
// run of done stretches at the front, or 0 when the front is in flight.
func (w *worker) finish(seq int64) event.ID {
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, s := range w.slots {
		if s.seq == seq {
			s.done = true
		}
	}
	return w.popLocked()
}

// idle records a stretch up to scan with nothing to send and returns the
// new cursor, as finish does.
func (w *worker) idle(scan event.ID) event.ID {
	w.mu.Lock()
	defer w.mu.Unlock()
	if n := len(w.slots); n > 0 && w.slots[n-1].seq == 0 {
		w.slots[n-1].upTo = max(w.slots[n-1].upTo, scan)
	} else {
		w.slots = append(w.slots, &slot{upTo: scan, done: true})
	}
	return w.popLocked()
}

func (w *worker) popLocked() event.ID {
	var c event.ID
	for len(w.slots) > 0 && w.slots[0].done {
		c = w.slots[0].upTo
		w.slots = w.slots[1:]
	}
	return c
}

// resumePoint is where scanning starts again after a batch could not be
// recorded: the end of the last recorded batch, else the cursor.
func (w *worker) resumePoint() event.ID {
	w.mu.Lock()
	defer w.mu.Unlock()
	c := w.m.cursorOf(w.hook.ID)
	for _, s := range w.slots {
		c = max(c, s.upTo)
	}
	return c
}

func newBatchID() string { return "msg_" + strings.ReplaceAll(randID(), "-", "") }

// collect reads matching events after *scan until the batch is full or
// batch_timeout has passed since its first event. Stretches with no
// match move the cursor now and then, so an idle hook does not rescan.
func (w *worker) collect(scan *event.ID, lastSave *time.Time) ([]eventlog.Record, event.ID, error) {
	var out []eventlog.Record
	var deadline, saveLater <-chan time.Time
	for {
		changed := w.m.log.Changed()
		recs := w.ahead
		w.ahead = nil
		full := true // the log may have more right now
		if len(recs) == 0 {
			var err error
			if recs, err = w.read(*scan); err != nil {
				return nil, 0, err
			}
			full = w.more
		}
		for i, r := range recs {
			*scan = r.ID
			if w.match(r) {
				out = append(out, r)
				if len(out) >= w.hook.MaxBatchSize {
					w.ahead = recs[i+1:]
					return out, *scan, nil
				}
			}
		}
		if full {
			continue
		}
		if len(out) == 0 {
			if c := w.idle(*scan); c > 0 {
				w.unsaved = max(w.unsaved, c)
			}
			if w.unsaved > 0 {
				if wait := time.Second - time.Since(*lastSave); wait > 0 {
					if saveLater == nil {
						t := time.NewTimer(wait)
						defer t.Stop()
						saveLater = t.C
					}
				} else if err := w.saveCursor(w.ctx, w.unsaved); err == nil {
					w.unsaved, *lastSave = 0, time.Now()
				} else if fenced(err) {
					w.cancel()
				}
			}
		}
		if len(out) > 0 && deadline == nil {
			t := time.NewTimer(time.Duration(w.hook.BatchTimeout))
			defer t.Stop()
			deadline = t.C
		}
		select {
		case <-w.ctx.Done():
			return nil, 0, w.ctx.Err()
		case <-deadline:
			return out, *scan, nil
		case <-changed:
		case <-saveLater:
			saveLater = nil
		}
	}
}

// aheadRoom says whether another batch may be recorded ahead of its place:
// up to four times max_in_flight batches wait (enough to fill the places
// that free while the next commit runs), and no more events than
// max_in_flight full batches or 4096, whichever is more.
func (w *worker) aheadRoom(queued, group []*pending, places int) bool {
	if len(queued)+len(group) >= 4*places {
		return false
	}
	n := 0
	for _, p := range queued {
		n += len(p.records)
	}
	for _, p := range group {
		n += len(p.records)
	}
	return n < max(4096, places*w.hook.MaxBatchSize)
}

// read reads the next page of the hook's scope after after.
func (w *worker) read(after event.ID) ([]eventlog.Record, error) {
	q := eventlog.Query{After: after, Limit: 1000}
	if w.hook.ProjectID != nil {
		q.Projects = []uint32{*w.hook.ProjectID}
	}
	recs, err := w.m.log.Read(w.ctx, q)
	w.more = err == nil && len(recs) == q.Limit
	return recs, err
}

// ready cuts the next batch from the records already read when they
// fill one, reading the next page when the last was full; it does not
// wait, and when no batch is full it changes nothing but what it read.
func (w *worker) ready(scan *event.ID) ([]eventlog.Record, event.ID, bool) {
	for {
		var out []eventlog.Record
		for i, r := range w.ahead {
			if !w.match(r) {
				continue
			}
			out = append(out, r)
			if len(out) >= w.hook.MaxBatchSize {
				*scan = r.ID
				w.ahead = w.ahead[i+1:]
				return out, r.ID, true
			}
		}
		if !w.more {
			return nil, 0, false
		}
		after := *scan
		if n := len(w.ahead); n > 0 {
			after = w.ahead[n-1].ID
		}
		recs, err := w.read(after)
		if err != nil || len(recs) == 0 {
			return nil, 0, false // collect reads again and says what failed
		}
		w.ahead = append(w.ahead, recs...)
	}
}

// match applies the key globs and the filter.
func (w *worker) match(r eventlog.Record) bool {
	ok := false
	for _, g := range w.hook.Events {
		if event.MatchGlob(g, r.Key) {
			ok = true
			break
		}
	}
	if !ok || w.comp.filter == nil {
		return ok
	}
	ev, err := decodeEvent(r.Body)
	if err != nil {
		return false
	}
	env := map[string]any{"event": ev, "profile": w.m.profileOf(w.ctx, r.ProjectID, r.Body).filterEnv()}
	out, err := expr.Run(w.comp.filter, env)
	if err != nil {
		w.m.met.filterErrors.WithLabelValues(w.hook.ID).Inc()
		return false
	}
	b, _ := out.(bool)
	return b
}

func decodeEvent(body []byte) (map[string]any, error) {
	var m map[string]any
	err := json.Unmarshal(body, &m)
	return m, err
}

// deliver sends p with the hook's retries, calls answered once the
// target accepted it when batches overlap, then commits: cursor past it,
// or a dead letter. It returns false when the worker must stop (the hook
// was stopped, the target is gone, or sluice is shutting down); the batch
// then stays in flight and goes first on the next start.
//
// A batch taken over from an earlier loop (a restart, another node, an
// activation after a 410) goes on with the attempt after the last one
// recorded (retried): its number, sends_trying_num and the retry budget
// count the attempts made before. An attempt cut off by a stop before its
// answer is not recorded, and its number is used again.
func (w *worker) deliver(p *pending, answered func()) bool {
	attempts := 1 + *w.hook.RetryTimes
	var lastErr error
	var lastStatus int
	var lastAtt *attempt
	var msgs [][]byte
	var meta []sink.Meta
	for a := p.tries + 1; ; a++ {
		if kept := w.m.forgotten.drop(p.records); len(kept) != len(p.records) {
			p.records, meta = kept, nil
		}
		if len(p.records) == 0 {
			// Every event of the batch was erased: nothing to send.
			cursor := w.finish(p.seq)
			return w.persist("commit an erased batch", func() error { return w.commit(p, nil, nil, cursor) })
		}
		msgs = w.m.buildMessages(w.ctx, &w.hook, w.comp, p.records, a-1, false)
		if meta == nil {
			meta = w.m.metaFor(w.ctx, w.comp, msgs)
		}
		start := time.Now()
		ctx, cancel := context.WithTimeout(w.ctx, w.hook.timeout())
		rep, err := w.sink.Deliver(ctx, &sink.Batch{ID: p.id, Messages: msgs, Attempt: a, Meta: meta})
		cancel()
		end := time.Now()
		if w.ctx.Err() != nil {
			return false // stopped or shutting down mid-request: retried later
		}
		var se *sink.Error
		errors.As(err, &se)
		status, resp := 0, ""
		if rep != nil {
			status, resp = rep.Status, rep.Response
		}
		var next time.Time
		var wait time.Duration
		permanent := se != nil && se.Permanent
		if err != nil && a < attempts && (se == nil || !se.Gone) && !permanent {
			wait = w.backoff(a, se)
			next = end.Add(wait)
		}
		att := &attempt{hookID: w.hook.ID, batchID: p.id, n: a, events: len(p.records), start: start, end: end,
			status: status, err: err, resp: resp, next: next, kind: "delivery"}
		w.m.met.latency.WithLabelValues(w.hook.ID).Observe(end.Sub(start).Seconds())
		if err == nil {
			if w.hook.MaxInFlight > 1 {
				// Batches overlap anyway: the next may go while this one's
				// finish commits. One in flight keeps log order across a
				// crash: the next waits for this commit.
				answered()
			}
			cursor := w.finish(p.seq)
			if !w.persist("commit delivered batch", func() error { return w.commit(p, nil, att, cursor) }) {
				return false
			}
			w.m.met.delivered.WithLabelValues(w.hook.ID).Add(float64(len(p.records)))
			w.m.met.batches.WithLabelValues(w.hook.ID).Inc()
			return true
		}
		w.m.met.failures.WithLabelValues(w.hook.ID, sink.Classify(err)).Inc()
		lastErr, lastStatus, lastAtt = err, status, att
		if se != nil && se.Gone {
			w.retried(p, att)
			w.m.stopHook(w.hook.ID, "the target answered 410 Gone: activate the hook again once it takes deliveries")
			return false
		}
		if a >= attempts || permanent {
			break
		}
		if !w.retried(p, att) {
			return false
		}
		w.m.met.retries.WithLabelValues(w.hook.ID).Inc()
		if !w.sleep(wait) {
			return false
		}
	}
	dl := &deadLetter{HookID: w.hook.ID, BatchID: p.id, Events: len(p.records), FirstID: p.records[0].ID,
		LastID: p.records[len(p.records)-1].ID, FirstTime: p.records[0].Time, Attempts: lastAtt.n, LastStatus: lastStatus, LastError: lastErr.Error()}
	dl.messages = msgs
	cursor := w.finish(p.seq)
	if !w.persist("park dead letter", func() error { return w.commit(p, dl, lastAtt, cursor) }) {
		return false
	}
	w.m.met.deadLetters.WithLabelValues(w.hook.ID).Inc()
	w.m.logger.Warn("batch parked as a dead letter", "hook", w.hook.ID, "batch", p.id, "events", len(p.records), "err", lastErr)
	if n := w.deadStreak(); n >= w.hook.StopAfterDeadLetters {
		w.m.stopHook(w.hook.ID, strconv.Itoa(n)+" consecutive dead letters; last error: "+lastErr.Error())
		return false
	}
	return true
}

// persist runs a write of the hook's state until it succeeds: a state
// that cannot be written (hooks.db's disk is full, the database is
// locked) is written again 100ms later, then up to every 5s, so the hook
// goes on by itself once it can. It reports false when the worker stops
// first; what was not written is then done again from the last state
// that was (a batch still recorded in flight is delivered again).
func (w *worker) persist(what string, write func() error) bool {
	wait := 100 * time.Millisecond
	for n := 1; ; n++ {
		err := write()
		if err == nil {
			if n > 1 {
				w.m.logger.Info(what+": written after a failure", "hook", w.hook.ID, "attempts", n)
			}
			return true
		}
		if w.ctx.Err() != nil {
			return false
		}
		if fenced(err) {
			w.m.logger.Warn(what+": the hook was claimed by a newer delivery loop; this one stops", "hook", w.hook.ID)
			w.cancel()
			return false
		}
		if n == 1 || n%20 == 0 {
			w.m.logger.Error(what, "hook", w.hook.ID, "err", err, "attempts", n, "retry_in", wait)
		}
		if !w.sleep(wait) {
			return false
		}
		wait = min(2*wait, 5*time.Second)
	}
}

// backoff is the wait before attempt a+1: the period (or period·2^(a-1)
// when exponential) ±20 %, or the target's Retry-After clamped to one to
// two periods.
func (w *worker) backoff(a int, se *sink.Error) time.Duration {
	period := time.Duration(w.hook.RetryPeriod)
	if se != nil && se.RetryAfter > 0 {
		return min(max(se.RetryAfter, period), 2*period)
	}
	d := period
	if w.hook.RetrySchedule == "exponential" {
		d = period << min(a-1, 20)
	}
	return time.Duration(float64(d) * (0.8 + 0.4*rand.Float64()))
}

// sleep waits d unless the worker stops; it reports whether to go on.
func (w *worker) sleep(d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-w.ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

// appendMessage writes one message: the canonical event plus custom_data,
// is_test and, after the first attempt, sends_trying_num.
func appendMessage(dst, body []byte, fs []customField, rc *renderContext, scratch *[]byte, content []byte, isTest bool, try int) []byte {
	body = bytes.TrimRight(body, " \n")
	dst = append(dst, body[:len(body)-1]...)
	dst = append(dst, `,"custom_data":`...)
	dst = render(dst, fs, rc, scratch)
	if content != nil {
		dst = append(dst, `,"content":`...)
		if utf8.Valid(content) {
			dst = event.AppendString(dst, string(content))
		} else {
			dst = append(dst, '"')
			dst = base64.StdEncoding.AppendEncode(dst, content)
			dst = append(dst, `","content_encoding":"base64"`...)
		}
	}
	if isTest {
		dst = append(dst, `,"is_test":true`...)
	} else {
		dst = append(dst, `,"is_test":false`...)
	}
	if try > 0 {
		dst = append(dst, `,"sends_trying_num":`...)
		dst = strconv.AppendInt(dst, int64(try), 10)
	}
	return append(dst, '}')
}
