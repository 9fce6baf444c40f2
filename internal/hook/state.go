package hook

import (
	"context"
	"errors"

	"github.com/sluicehq/sluice/internal/event"
	"github.com/sluicehq/sluice/internal/eventlog"
)

// The store side of the delivery loop: every write carries the loop's
// generation (Store.Claim), so a loop whose hook was claimed again writes
// nothing.

// claim starts the loop's generation and takes the hook's place as stored.
func (w *worker) claim(ctx context.Context) error {
	c, err := w.store.Claim(ctx, w.hook.ID)
	if err != nil {
		return err
	}
	w.gen = c.Generation
	w.hook.Cursor, w.hook.scan = c.Cursor, c.Scan
	w.m.noteCursor(w.hook.ID, c.Cursor)
	return nil
}

func (w *worker) loadInflight(ctx context.Context) ([]*pending, error) {
	stored, err := w.store.Inflight(ctx, w.hook.ID)
	if err != nil {
		return nil, err
	}
	var out []*pending
	for _, b := range stored {
		p := &pending{seq: b.Seq, id: b.BatchID, upTo: b.UpTo, tries: b.Attempts}
		// Rebuild the batch from the log: the same events, the same id.
		want := map[event.ID]bool{}
		for _, id := range b.IDs {
			want[id] = true
		}
		after := b.IDs[0] - 1
		for len(p.records) < len(b.IDs) {
			recs, err := w.m.log.Read(ctx, eventlog.Query{After: after, Limit: eventlog.MaxLimit})
			if err != nil {
				return nil, err
			}
			for _, r := range recs {
				if want[r.ID] {
					p.records = append(p.records, r)
				}
			}
			if len(recs) < eventlog.MaxLimit || recs[len(recs)-1].ID >= b.IDs[len(b.IDs)-1] {
				break
			}
			after = recs[len(recs)-1].ID
		}
		if len(p.records) == 0 { // removed by retention meanwhile
			if err := w.commit(p, nil, nil, 0); err != nil {
				return nil, err
			}
			continue
		}
		out = append(out, p)
	}
	return out, nil
}

// saveInflight records the batches of group, in scan order, before
// their first attempt, with the scan position after the last (where a
// restart resumes forming batches), in one commit.
func (w *worker) saveInflight(ctx context.Context, group []*pending) error {
	bs := make([]InflightBatch, len(group))
	for i, p := range group {
		ids := make([]event.ID, len(p.records))
		for j, r := range p.records {
			ids[j] = r.ID
		}
		bs[i] = InflightBatch{Seq: p.seq, BatchID: p.id, IDs: ids, UpTo: p.upTo}
	}
	if err := w.store.SaveInflight(ctx, w.hook.ID, w.gen, bs...); err != nil {
		return err
	}
	w.m.noteScan(w.hook.ID, group[len(group)-1].upTo)
	return nil
}

func (w *worker) saveCursor(ctx context.Context, c event.ID) error {
	if err := w.store.SaveCursor(ctx, w.hook.ID, w.gen, c); err != nil {
		return err
	}
	w.m.noteCursor(w.hook.ID, c)
	return nil
}

// commit ends batch p in one transaction: its in-flight record goes, its
// last attempt is logged, it is parked as a dead letter when dl is set,
// and the cursor moves to cursor when that is not 0 (the end of the run
// of finished batches that p completed).
func (w *worker) commit(p *pending, dl *deadLetter, att *attempt, cursor event.ID) error {
	f := Finish{Seq: p.seq, Cursor: cursor, DeadLetter: dl}
	if att != nil {
		f.Attempt = att.record()
	}
	if dl != nil {
		dl.CreatedAt = w.m.cfg.Now()
	}
	if err := w.store.Finish(context.Background(), w.hook.ID, w.gen, f); err != nil {
		return err
	}
	w.m.noteCursor(w.hook.ID, cursor)
	return nil
}

// retried logs att, a failed attempt of p that is not its last, and
// records its number with p in flight (Store.Retry), in the commit that
// logged the attempt before: a restart or the node that takes the hook
// over goes on with the next number. A write that fails is logged and the
// delivery goes on (the attempt is then neither logged nor counted, as
// the attempt log lost it before); false when the hook was claimed by a
// newer loop, which this one leaves the batch to.
func (w *worker) retried(p *pending, att *attempt) bool {
	err := w.store.Retry(context.Background(), w.hook.ID, w.gen, p.seq, *att.record())
	if err == nil {
		p.tries = att.n
		return true
	}
	if fenced(err) {
		w.m.logger.Warn("record a retried attempt: the hook was claimed by a newer delivery loop; this one stops", "hook", w.hook.ID)
		w.cancel()
		return false
	}
	w.m.logger.Error("attempt log", "hook", w.hook.ID, "err", err)
	return true
}

func (w *worker) deadStreak() int {
	n, _ := w.store.DeadStreak(context.Background(), w.hook.ID)
	return n
}

// fenced reports whether err says the hook was claimed by a newer loop.
func fenced(err error) bool { return errors.Is(err, ErrFenced) }
