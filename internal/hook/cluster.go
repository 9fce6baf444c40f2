package hook

import (
	"context"
	"math/rand/v2"
	"time"

	"github.com/sluicehq/sluice/internal/lease"
)

// Several nodes share one Store (storage postgres). Each hook is
// delivered by one node at a time: the holder of the lease "hook:<id>".
// Every Renew a node renews the leases it holds and takes free ones up to
// its share (the active hooks over the nodes alive, each node holding
// "node:<holder>"); a node above its share stops one of its hooks and
// gives its lease up, so hooks spread as nodes join. A worker runs only
// while its lease is safe to use (lease.Timing.Safe): a node cut off from
// the database stops its workers before anyone can take their hooks, and
// a node that dies is replaced within TTL plus Renew. The node that takes
// a hook over starts from its cursor and its batches in flight (the same
// batch ids: at-least-once, duplicates only of the batches in flight),
// and its Claim fences any write of the loop before.
//
// A change made through another node (a hook created, changed, stopped,
// deleted, an erasure) moves the Store's version; every node polls it
// and reloads its hooks, restarting the workers whose hooks changed.

// cluster is the state of a Manager that shares its Store.
type cluster struct {
	leases lease.Leaser
	holder string
	timing lease.Timing
	// held: the hooks whose leases this node holds, and until when each
	// is safe to use (guarded by Manager.mu).
	held    map[string]time.Time
	wake    chan struct{}
	version int64
}

// pollEvery is how often a node checks the Store's version.
const pollEvery = 250 * time.Millisecond

func hookLease(id string) string { return "hook:" + id }

// holdsLocked reports whether this node may run hook id's worker.
func (m *Manager) holdsLocked(id string) bool {
	if m.cluster == nil {
		return true
	}
	safe, ok := m.cluster.held[id]
	if !ok || time.Now().After(safe) {
		select {
		case m.cluster.wake <- struct{}{}:
		default:
		}
		return false
	}
	return true
}

// runCluster claims and renews leases and follows the other nodes'
// changes until ctx ends; then it stops every worker and gives the leases
// up, so that other nodes take the hooks over at once.
func (m *Manager) runCluster(ctx context.Context) {
	c := m.cluster
	go m.follow(ctx)
	t := time.NewTicker(c.timing.Renew)
	defer t.Stop()
	for {
		m.claim(ctx)
		select {
		case <-ctx.Done():
			m.stopAll()
			m.mu.Lock()
			names := []string{"node:" + c.holder}
			for id := range c.held {
				names = append(names, hookLease(id))
			}
			c.held = map[string]time.Time{}
			m.mu.Unlock()
			rctx, cancel := context.WithTimeout(context.Background(), c.timing.Renew)
			if err := c.leases.Release(rctx, c.holder, names); err != nil {
				m.logger.Warn("give up hook leases", "err", err)
			}
			cancel()
			return
		case <-t.C:
		case <-c.wake:
		}
	}
}

// claim renews the leases this node holds, takes free ones up to its
// share, starts and stops workers to match, and sheds one hook when it
// holds more than its share.
func (m *Manager) claim(ctx context.Context) {
	c := m.cluster
	m.mu.Lock()
	if m.closed {
		m.mu.Unlock()
		return
	}
	var active, held, free []string
	var soonest time.Time
	for id, r := range m.rows {
		if !r.hook.Active {
			continue
		}
		active = append(active, id)
		if safe, ok := c.held[id]; ok {
			held = append(held, id)
			if soonest.IsZero() || safe.Before(soonest) {
				soonest = safe
			}
		} else {
			free = append(free, id)
		}
	}
	var inactive []string
	for id := range c.held {
		if r := m.rows[id]; r == nil || !r.hook.Active {
			inactive = append(inactive, id)
			delete(c.held, id)
		}
	}
	m.mu.Unlock()

	nodes, err := c.leases.Holders(ctx, "node:")
	if err != nil || nodes < 1 {
		nodes = 1
	}
	share := (len(active) + nodes - 1) / nodes
	rand.Shuffle(len(free), func(i, j int) { free[i], free[j] = free[j], free[i] })
	names := []string{"node:" + c.holder}
	for _, id := range held {
		names = append(names, hookLease(id))
	}
	for _, id := range free[:min(len(free), max(share-len(held), 0))] {
		names = append(names, hookLease(id))
	}
	asked := time.Now()
	// An answer that comes after the leases in hand are no longer safe
	// comes too late.
	deadline := c.timing.Safe(asked)
	if !soonest.IsZero() && soonest.Before(deadline) {
		deadline = soonest
	}
	actx, cancel := context.WithDeadline(ctx, deadline)
	got, err := c.leases.Acquire(actx, c.holder, c.timing.TTL, names)
	cancel()
	if len(inactive) > 0 {
		names := make([]string, len(inactive))
		for i, id := range inactive {
			names[i] = hookLease(id)
		}
		_ = c.leases.Release(ctx, c.holder, names)
	}
	var stop []string
	if err != nil {
		if ctx.Err() == nil {
			m.logger.Warn("renew hook leases", "err", err)
		}
		// Workers whose leases will not be safe by the next renewal stop
		// now.
		m.mu.Lock()
		for id, safe := range c.held {
			if time.Until(safe) < c.timing.Renew {
				delete(c.held, id)
				stop = append(stop, id)
			}
		}
		m.mu.Unlock()
		for _, id := range stop {
			m.stopWorker(id)
		}
		return
	}
	safe := c.timing.Safe(asked)
	gotSet := make(map[string]bool, len(got))
	for _, n := range got {
		gotSet[n] = true
	}
	var shed []string
	m.mu.Lock()
	for _, id := range held {
		if !gotSet[hookLease(id)] {
			delete(c.held, id)
			stop = append(stop, id)
		}
	}
	for _, id := range active {
		if gotSet[hookLease(id)] {
			c.held[id] = safe
		}
	}
	for id := range c.held {
		if w := m.workers[id]; w != nil {
			select {
			case <-w.done: // ended by itself (fenced, failing): again
				delete(m.workers, id)
			default:
			}
		}
		if m.rows[id] != nil && m.rows[id].hook.Active {
			m.startLocked(id)
		}
	}
	if len(c.held) > share && share > 0 {
		for id := range c.held {
			shed = append(shed, id)
			delete(c.held, id)
			break
		}
	}
	m.mu.Unlock()
	for _, id := range append(stop, shed...) {
		m.stopWorker(id)
	}
	if len(shed) > 0 {
		m.logger.Info("hook handed to another node", "hook", shed[0], "share", share, "nodes", nodes)
		_ = c.leases.Release(ctx, c.holder, []string{hookLease(shed[0])})
	}
}

// stopAll stops every worker.
func (m *Manager) stopAll() {
	m.mu.Lock()
	ws := m.workers
	m.workers = map[string]*worker{}
	m.mu.Unlock()
	for id, w := range ws {
		w.cancel()
		<-w.done
		m.met.active.WithLabelValues(id).Set(0)
	}
}

// follow reloads the hooks when the Store's version moves, and takes
// the cursors of the hooks other nodes deliver now and then.
func (m *Manager) follow(ctx context.Context) {
	c := m.cluster
	t := time.NewTicker(pollEvery)
	defer t.Stop()
	n := 0
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if v, err := m.store.Version(ctx); err == nil && v != c.version {
			if err := m.reload(ctx); err != nil {
				if ctx.Err() == nil {
					m.logger.Warn("reload hooks changed by another node", "err", err)
				}
			} else {
				c.version = v
			}
		}
		if n++; n%8 == 0 {
			m.takeCursors(ctx)
		}
	}
}

// reload makes the hooks in memory those of the Store: a hook added,
// changed, switched or deleted through another node is added, restarted
// or stopped here.
func (m *Manager) reload(ctx context.Context) error {
	stored, err := m.store.Hooks(ctx)
	if err != nil {
		return err
	}
	if ids, err := m.store.Forgotten(ctx, m.cfg.Now().Add(-forgetFor)); err == nil {
		m.forgotten.add(ids, time.Now())
	}
	rows := map[string]*row{}
	for _, sh := range stored {
		r, err := m.seal.row(sh)
		if err != nil {
			return err
		}
		if m.dests.Resolve(&r.hook) == nil {
			m.defaults(&r.hook)
		}
		rows[r.hook.ID] = r
	}
	var restart []string
	m.mu.Lock()
	for id, old := range m.rows {
		nr, ok := rows[id]
		switch {
		case !ok:
			delete(m.rows, id)
			restart = append(restart, id)
		case nr.hook.UpdatedAt.UnixMilli() != old.hook.UpdatedAt.UnixMilli() || nr.hook.Active != old.hook.Active || nr.hook.StoppedReason != old.hook.StoppedReason:
			m.rows[id] = nr
			restart = append(restart, id)
		}
	}
	for id, nr := range rows {
		if _, ok := m.rows[id]; !ok {
			m.rows[id] = nr
		}
	}
	m.scopeContentLocked()
	m.mu.Unlock()
	for _, id := range restart {
		m.stopWorker(id)
	}
	m.mu.Lock()
	for _, id := range restart {
		if r := m.rows[id]; r != nil && r.hook.Active {
			m.startLocked(id)
		}
	}
	m.mu.Unlock()
	return nil
}

// takeCursors sets the cursors of the hooks other nodes deliver (for the
// API and the lag gauges).
func (m *Manager) takeCursors(ctx context.Context) {
	cs, err := m.store.Cursors(ctx)
	if err != nil {
		return
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	for id, c := range cs {
		if r := m.rows[id]; r != nil && m.workers[id] == nil {
			r.hook.Cursor = c
		}
	}
}
