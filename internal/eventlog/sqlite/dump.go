package sqlite

import (
	"context"
	"database/sql"
	"fmt"

	"github.com/sluicehq/sluice/internal/event"
	"github.com/sluicehq/sluice/internal/eventlog"
)

var _ eventlog.Dumper = (*Log)(nil)

// Dump implements eventlog.Dumper, reading in pages of id order.
func (l *Log) Dump(ctx context.Context, events func(eventlog.StoredEvent) error, contents func(eventlog.StoredContent) error) error {
	after := int64(-1)
	for {
		rows, err := l.rdb.QueryContext(ctx, `SELECT id, project_id, key, time, dedup, body, content_id, people FROM events WHERE id > ? ORDER BY id LIMIT 5000`, after)
		if err != nil {
			return fmt.Errorf("dump events: %w", err)
		}
		n := 0
		for rows.Next() {
			var e eventlog.StoredEvent
			var id, project int64
			var dedup sql.NullString
			var body string
			var content sql.NullInt64
			if err := rows.Scan(&id, &project, &e.Key, &e.Time, &dedup, &body, &content, &e.People); err != nil {
				rows.Close()
				return fmt.Errorf("dump events: %w", err)
			}
			e.ID, e.ProjectID, e.Body, e.ContentID, e.DedupKey = event.ID(id), uint32(project), []byte(body), content.Int64, dedup.String
			if err := events(e); err != nil {
				rows.Close()
				return err
			}
			after, n = id, n+1
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return fmt.Errorf("dump events: %w", err)
		}
		if n < 5000 {
			break
		}
	}
	after = -1
	for {
		rows, err := l.rdb.QueryContext(ctx, `SELECT id, received_at, body FROM contents WHERE id > ? ORDER BY id LIMIT 500`, after)
		if err != nil {
			return fmt.Errorf("dump raw requests: %w", err)
		}
		n := 0
		for rows.Next() {
			var c eventlog.StoredContent
			if err := rows.Scan(&c.ID, &c.ReceivedAt, &c.Body); err != nil {
				rows.Close()
				return fmt.Errorf("dump raw requests: %w", err)
			}
			if err := contents(c); err != nil {
				rows.Close()
				return err
			}
			after, n = c.ID, n+1
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return fmt.Errorf("dump raw requests: %w", err)
		}
		if n < 500 {
			return nil
		}
	}
}
