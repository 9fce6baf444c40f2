package hook

import (
	"context"
	"encoding/json"
	"strconv"
	"sync"
	"time"

	"github.com/tidwall/gjson"

	"github.com/sluicehq/sluice/internal/event"
	"github.com/sluicehq/sluice/internal/eventlog"
)

// Erasure reaches the deliveries not yet made: a batch in flight drops the
// erased events before its next attempt (and is finished without a
// request when none is left), and dead letters lose their messages, so a
// replay cannot send them. Batches rebuilt after a restart come from the
// log, which no longer holds them.

// forgetFor is how long an erased id is remembered for batches in flight:
// longer than any hook retries.
const forgetFor = 24 * time.Hour

// forgotten is the set of erased event ids, with when they were erased.
type forgotten struct {
	mu  sync.Mutex
	ids map[event.ID]time.Time
}

func (f *forgotten) add(ids []event.ID, now time.Time) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.ids == nil {
		f.ids = map[event.ID]time.Time{}
	}
	for id, at := range f.ids {
		if now.Sub(at) > forgetFor {
			delete(f.ids, id)
		}
	}
	for _, id := range ids {
		f.ids[id] = now
	}
}

// has reports whether id was erased.
func (f *forgotten) has(id event.ID) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	_, gone := f.ids[id]
	return gone
}

// drop returns recs without the erased ones (recs itself when none is).
func (f *forgotten) drop(recs []eventlog.Record) []eventlog.Record {
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.ids) == 0 {
		return recs
	}
	var out []eventlog.Record
	for i, r := range recs {
		if _, gone := f.ids[r.ID]; gone {
			if out == nil {
				out = append(make([]eventlog.Record, 0, len(recs)), recs[:i]...)
			}
			continue
		}
		if out != nil {
			out = append(out, r)
		}
	}
	if out == nil {
		return recs
	}
	return out
}

// Forget drops the events ids of a project from every delivery not yet
// made (see above).
func (m *Manager) Forget(ctx context.Context, projectID uint32, ids []event.ID) error {
	if len(ids) == 0 {
		return nil
	}
	m.forgotten.add(ids, time.Now())
	if m.cluster != nil {
		// Batches in flight on the other nodes drop them too.
		if err := m.store.Forget(ctx, ids, m.cfg.Now()); err != nil {
			return err
		}
	}
	erased := make(map[string]bool, len(ids))
	for _, id := range ids {
		erased[strconv.FormatUint(uint64(id), 10)] = true
	}
	return m.store.EachDeadLetter(ctx, func(id int64, msgs []byte) error {
		var kept []json.RawMessage
		dropped := false
		gjson.ParseBytes(msgs).ForEach(func(_, m gjson.Result) bool {
			if erased[m.Get("id").String()] && uint32(m.Get("projectId").Uint()) == projectID {
				dropped = true
			} else {
				kept = append(kept, json.RawMessage(m.Raw))
			}
			return true
		})
		if !dropped {
			return nil
		}
		b, _ := json.Marshal(kept)
		return m.store.RewriteDeadLetter(ctx, id, b, len(kept))
	})
}
