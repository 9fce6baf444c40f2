package eventlog

import (
	"context"

	"github.com/sluicehq/sluice/internal/event"
)

// A log moves from one backend to another (sluice migrate --from) with
// its ids, dedup keys and kept raw requests: hooks' cursors and batches
// in flight and profiles' observations name events by id.

// StoredEvent is an event as a backend stores it.
type StoredEvent struct {
	Record
	// DedupKey is the event's dedup key ("" when it has none).
	DedupKey string
	// People is how many identities it carries.
	People int
}

// StoredContent is a kept raw request.
type StoredContent struct {
	ID int64
	event.Content
}

// Dumper is a log that can be moved: Dump calls events with every stored
// event, in id order, then contents with every kept raw request.
type Dumper interface {
	Dump(ctx context.Context, events func(StoredEvent) error, contents func(StoredContent) error) error
}

// Loader is a log that can be moved into: Load stores events and raw
// requests as a Dumper gave them, keeping their ids (none of which it
// holds), and raises its head to the highest id.
type Loader interface {
	Load(ctx context.Context, events []StoredEvent, contents []StoredContent) error
}
