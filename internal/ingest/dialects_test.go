package ingest

import (
	"time"

	"github.com/sluicehq/sluice/internal/dialect"
	"github.com/sluicehq/sluice/internal/event"
	"github.com/sluicehq/sluice/internal/project"
)

// testDialects is the registry app writes out, for tests: the four
// dialects on a real project store, the catch-all webhook last.
func testDialects(ps *project.Store, gen *event.Generator, now func() time.Time) []dialect.Dialect {
	if now == nil {
		now = time.Now
	}
	return []dialect.Dialect{
		&dialect.Track{Projects: ps},
		&dialect.Commerce{Projects: ps, Now: now},
		&dialect.S2S{Projects: ps, Now: now},
		&dialect.Webhook{Projects: ps, NewUID: gen.Next},
	}
}

// webhookOf returns the registry's webhook dialect.
func webhookOf(s *Server) *dialect.Webhook {
	for _, d := range s.dialects {
		if w, ok := d.(*dialect.Webhook); ok {
			return w
		}
	}
	return nil
}
