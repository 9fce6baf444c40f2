package dialect

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	"github.com/sluicehq/sluice/internal/project"
)

// seedTime is the instant of seed 001's example message.
var seedTime = time.UnixMilli(1540771658623)

// fixtureProjects opens a real project store with the projects the tests
// refer to:
//
//	0   default
//	7   shop: webhook_auth token, token "abc123"
//	8   other: token "other-project-token"
//	99  calls: redirect_hosts example.com, *.shop.io
func fixtureProjects(t testing.TB) *project.Store {
	t.Helper()
	s, err := project.Open(filepath.Join(t.TempDir(), "state.db"), func() time.Time { return seedTime })
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	ctx := context.Background()
	mk := func(id uint32, name string, st project.Settings, secret string) {
		if _, err := s.Create(ctx, &id, name, st); err != nil {
			t.Fatal(err)
		}
		if secret != "" {
			if _, _, err := s.CreateToken(ctx, id, "t", secret); err != nil {
				t.Fatal(err)
			}
		}
	}
	mk(7, "shop", project.Settings{WebhookAuth: project.WebhookAuthToken}, "abc123")
	mk(8, "other", project.Settings{}, "other-project-token")
	mk(99, "calls", project.Settings{RedirectHosts: []string{"example.com", "*.shop.io"}}, "")
	return s
}

// decode runs a request through a dialect as the ingest handler does,
// without the body read: Accept, Authenticate, Decode.
func decode(d Dialect, r *Request) (*Decoded, error) {
	if r.Route == "" {
		route, ok := d.Match(r.HTTP)
		if !ok {
			return nil, Errorf(404, "%s does not serve %s", d.Name(), r.HTTP.URL.Path)
		}
		r.Route = route
	}
	if _, err := d.Accept(r.HTTP, r.Route); err != nil {
		return nil, err
	}
	p, err := d.Authenticate(r)
	if err != nil {
		return nil, err
	}
	r.Project = p
	return d.Decode(r)
}
