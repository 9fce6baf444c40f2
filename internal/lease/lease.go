// Package lease decides which node of a cluster does a job that must run
// once at a time: deliver a hook, fold the profiles, apply retention. A
// lease is a name held by one node (its holder) until it expires; the
// holder renews it well before, and a node that dies stops renewing, so
// another takes the lease once it has expired.
//
// A holder must stop the job before its lease can have expired. Run
// counts from the moment it asked for the lease (never from the store's
// answer), so a renewal that is slow or lost stops the job one renewal
// period before anyone else can take the lease, whatever the clocks of
// the nodes say: expiry is by the store's clock alone.
package lease

import (
	"context"
	"log/slog"
	"time"
)

// Leaser takes and renews named leases.
type Leaser interface {
	// Acquire takes each of names that is free or expired, renews each
	// that holder holds, until ttl from now by the store's clock, and
	// returns those holder holds after.
	Acquire(ctx context.Context, holder string, ttl time.Duration, names []string) ([]string, error)
	// Release gives names up at once (a node that stops, or sheds work).
	Release(ctx context.Context, holder string, names []string) error
	// Holders counts the distinct holders of unexpired leases whose names
	// start with prefix.
	Holders(ctx context.Context, prefix string) (int, error)
}

// Local is the Leaser of a node that is alone (storage sqlite: the data
// directory's lock keeps any other out): it holds every lease.
type Local struct{}

var _ Leaser = Local{}

func (Local) Acquire(_ context.Context, _ string, _ time.Duration, names []string) ([]string, error) {
	return names, nil
}

func (Local) Release(context.Context, string, []string) error { return nil }

func (Local) Holders(context.Context, string) (int, error) { return 1, nil }

// Timing is how long a lease lasts and how often it is renewed.
type Timing struct {
	// TTL is how long a lease lasts after each renewal (10s): a node that
	// dies is replaced within TTL plus Renew.
	TTL time.Duration
	// Renew is how often the holder renews, and how often the others try
	// to take it (2s). A holder stops its job when TTL minus Renew has
	// passed since the last renewal it asked for and got.
	Renew time.Duration
}

// Defaults of Timing.
const (
	DefaultTTL   = 10 * time.Second
	DefaultRenew = 2 * time.Second
)

// WithDefaults fills in what t leaves out.
func (t Timing) WithDefaults() Timing {
	if t.TTL <= 0 {
		t.TTL = DefaultTTL
	}
	if t.Renew <= 0 || t.Renew >= t.TTL {
		t.Renew = min(DefaultRenew, t.TTL/5)
	}
	return t
}

// Safe is how long a lease granted by an Acquire asked for at asked can
// be used: until TTL minus Renew after it.
func (t Timing) Safe(asked time.Time) time.Time { return asked.Add(t.TTL - t.Renew) }

// Run does fn while holder holds lease name: it takes the lease when it
// is free, renews it every Renew, and cancels fn's context (and waits
// for fn to return) when the lease is lost or a renewal has not come
// back in time; then it tries again. fn returning early is taken as done
// for this holding: it is called again at the next taking. Run returns
// when ctx ends, after fn has returned and the lease is released.
func Run(ctx context.Context, l Leaser, t Timing, holder, name string, logger *slog.Logger, fn func(ctx context.Context)) {
	t = t.WithDefaults()
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	var (
		jobCancel context.CancelFunc
		jobDone   chan struct{}
		safe      time.Time
	)
	stop := func() {
		if jobCancel != nil {
			jobCancel()
			<-jobDone
			jobCancel, jobDone = nil, nil
		}
	}
	defer func() {
		stop()
		rctx, cancel := context.WithTimeout(context.Background(), t.Renew)
		defer cancel()
		if err := l.Release(rctx, holder, []string{name}); err != nil {
			logger.Warn("release lease", "lease", name, "err", err)
		}
	}()
	tick := time.NewTicker(t.Renew)
	defer tick.Stop()
	for {
		asked := time.Now()
		// An answer that comes after the lease in hand is no longer safe
		// comes too late.
		deadline := t.Safe(asked)
		if jobCancel != nil && safe.Before(deadline) {
			deadline = safe
		}
		actx, cancel := context.WithDeadline(ctx, deadline)
		held, err := l.Acquire(actx, holder, t.TTL, []string{name})
		cancel()
		switch {
		case err == nil && len(held) == 1:
			safe = t.Safe(asked)
			if jobCancel == nil {
				logger.Info("lease taken", "lease", name, "holder", holder)
				jctx, jc := context.WithCancel(ctx)
				jobCancel, jobDone = jc, make(chan struct{})
				go func(done chan struct{}) {
					defer close(done)
					fn(jctx)
				}(jobDone)
			}
		case err == nil:
			if jobCancel != nil {
				logger.Warn("lease lost to another node", "lease", name)
				stop()
			}
		default:
			if ctx.Err() != nil {
				return
			}
			logger.Warn("renew lease", "lease", name, "err", err)
		}
		// Until the next renewal: the job stops when the lease may no
		// longer be safe to use.
		var expire <-chan time.Time
		var timer *time.Timer
		if jobCancel != nil {
			timer = time.NewTimer(time.Until(safe))
			expire = timer.C
		}
		select {
		case <-ctx.Done():
		case <-tick.C:
		case <-expire:
			logger.Warn("lease not renewed in time; the job stops", "lease", name)
			stop()
		}
		if timer != nil {
			timer.Stop()
		}
		if ctx.Err() != nil {
			return
		}
	}
}
