package hook

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"math/rand/v2"
	"strconv"
	"strings"
	"time"

	"github.com/expr-lang/expr"

	"github.com/sluicehq/sluice/internal/event"
	"github.com/sluicehq/sluice/internal/eventlog"
	"github.com/sluicehq/sluice/internal/sink"
)

// worker delivers one active hook: it follows the log from the hook's
// cursor, forms batches, and moves the cursor only past batches that were
// delivered or parked as dead letters.
type worker struct {
	m      *Manager
	hook   Hook
	comp   *compiled
	sink   sink.Sink
	ctx    context.Context
	cancel context.CancelFunc
	done   chan struct{}
}

// pending is a formed batch.
type pending struct {
	seq     int64
	id      string
	records []eventlog.Record
	upTo    event.ID // the scan position when it was cut: the cursor after it
}

func (w *worker) run() {
	defer close(w.done)
	defer w.sink.Close()
	log := w.m.logger.With("hook", w.hook.ID)
	cursor := w.hook.Cursor
	// Batches formed before a restart go first, exactly as they were.
	inflight, err := w.m.loadInflight(w.ctx, w.hook.ID)
	if err != nil {
		log.Error("load in-flight batches", "err", err)
		return
	}
	var seq int64
	for _, p := range inflight {
		if !w.deliver(p) {
			return
		}
		cursor, seq = p.upTo, p.seq
	}
	scan := cursor
	lastSave := time.Now()
	for w.ctx.Err() == nil {
		recs, upTo, err := w.collect(&scan, cursor, &lastSave)
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
		p := &pending{seq: seq, id: newBatchID(), records: recs, upTo: upTo}
		if err := w.m.saveInflight(w.ctx, w.hook.ID, p); err != nil {
			if w.ctx.Err() == nil {
				log.Error("save in-flight batch", "err", err)
				w.sleep(time.Second)
			}
			scan = cursor
			continue
		}
		if !w.deliver(p) {
			return
		}
		cursor = upTo
	}
}

func newBatchID() string { return "msg_" + strings.ReplaceAll(randID(), "-", "") }

// collect reads matching events after *scan until the batch is full or
// batch_timeout has passed since its first event. Positions with no
// match are saved now and then, so an idle hook does not rescan.
func (w *worker) collect(scan *event.ID, cursor event.ID, lastSave *time.Time) ([]eventlog.Record, event.ID, error) {
	var out []eventlog.Record
	var deadline <-chan time.Time
	q := eventlog.Query{Limit: 1000}
	if w.hook.ProjectID != nil {
		q.Projects = []uint32{*w.hook.ProjectID}
	}
	for {
		changed := w.m.log.Changed()
		q.After = *scan
		recs, err := w.m.log.Read(w.ctx, q)
		if err != nil {
			return nil, 0, err
		}
		for _, r := range recs {
			*scan = r.ID
			if w.match(r) {
				out = append(out, r)
				if len(out) >= w.hook.MaxBatchSize {
					return out, *scan, nil
				}
			}
		}
		if len(recs) == q.Limit {
			continue // more is there already
		}
		if len(out) == 0 && *scan > cursor && time.Since(*lastSave) > time.Second {
			if err := w.m.saveCursor(w.ctx, w.hook.ID, *scan); err == nil {
				*lastSave = time.Now()
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
		}
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
	env := map[string]any{"event": ev, "profile": w.m.profileOf(w.ctx, r.ProjectID, ev)}
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

// deliver sends p with the hook's retries, then commits: cursor past it,
// or a dead letter. It returns false when the worker must stop (the hook
// was stopped, the target is gone, or sluice is shutting down); the batch
// then stays in flight and goes first on the next start.
func (w *worker) deliver(p *pending) bool {
	attempts := 1 + *w.hook.RetryTimes
	var lastErr error
	var lastStatus int
	var msgs [][]byte
	for a := 1; ; a++ {
		msgs = w.m.buildMessages(w.ctx, &w.hook, w.comp, p.records, a-1, false)
		start := time.Now()
		ctx, cancel := context.WithTimeout(w.ctx, w.timeout())
		rep, err := w.sink.Deliver(ctx, &sink.Batch{ID: p.id, Messages: msgs, Attempt: a})
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
		if err != nil && a < attempts && (se == nil || !se.Gone) {
			wait = w.backoff(a, se)
			next = end.Add(wait)
		}
		w.m.recordAttempt(w.hook.ID, p.id, a, len(p.records), start, end, status, err, resp, next, "delivery")
		w.m.met.latency.WithLabelValues(w.hook.ID).Observe(end.Sub(start).Seconds())
		if err == nil {
			if cerr := w.m.commit(w.hook.ID, p, nil); cerr != nil {
				w.m.logger.Error("commit delivered batch", "hook", w.hook.ID, "err", cerr)
				return false
			}
			w.m.met.delivered.WithLabelValues(w.hook.ID).Add(float64(len(p.records)))
			w.m.met.batches.WithLabelValues(w.hook.ID).Inc()
			return true
		}
		w.m.met.failures.WithLabelValues(w.hook.ID, sink.Classify(err)).Inc()
		lastErr, lastStatus = err, status
		if se != nil && se.Gone {
			w.m.stopHook(w.hook.ID, "the target answered 410 Gone: "+err.Error())
			return false
		}
		if a >= attempts {
			break
		}
		w.m.met.retries.WithLabelValues(w.hook.ID).Inc()
		if !w.sleep(wait) {
			return false
		}
	}
	dl := &deadLetter{HookID: w.hook.ID, BatchID: p.id, Events: len(p.records), FirstID: p.records[0].ID,
		LastID: p.records[len(p.records)-1].ID, FirstTime: p.records[0].Time, Attempts: attempts, LastStatus: lastStatus, LastError: lastErr.Error()}
	dl.messages = msgs
	if err := w.m.commit(w.hook.ID, p, dl); err != nil {
		w.m.logger.Error("park dead letter", "hook", w.hook.ID, "err", err)
		return false
	}
	w.m.met.deadLetters.WithLabelValues(w.hook.ID).Inc()
	w.m.logger.Warn("batch parked as a dead letter", "hook", w.hook.ID, "batch", p.id, "events", len(p.records), "err", lastErr)
	if n := w.m.deadStreak(w.hook.ID); n >= w.hook.StopAfterDeadLetters {
		w.m.stopHook(w.hook.ID, strconv.Itoa(n)+" consecutive dead letters; last error: "+lastErr.Error())
		return false
	}
	return true
}

func (w *worker) timeout() time.Duration {
	if w.hook.HTTP != nil && w.hook.HTTP.Timeout > 0 {
		return time.Duration(w.hook.HTTP.Timeout) + time.Second
	}
	return DefaultTimeout + time.Second
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
func appendMessage(dst, body, customData []byte, isTest bool, try int) []byte {
	body = bytes.TrimRight(body, " \n")
	dst = append(dst, body[:len(body)-1]...)
	dst = append(dst, `,"custom_data":`...)
	dst = append(dst, customData...)
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
