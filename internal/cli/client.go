package cli

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/sluicehq/sluice/internal/admin"
	"github.com/sluicehq/sluice/internal/config"
	"github.com/sluicehq/sluice/internal/datadir"
	"github.com/sluicehq/sluice/internal/event"
	"github.com/sluicehq/sluice/internal/eventlog"
	"github.com/sluicehq/sluice/internal/eventlog/sqlite"
	"github.com/sluicehq/sluice/internal/hook"
	"github.com/sluicehq/sluice/internal/project"
)

// client is what the project, token and events commands need. remote
// talks to a running server's admin API; local opens the data directory
// when no server holds it.
type client interface {
	ListProjects(ctx context.Context) ([]project.Project, error)
	GetProject(ctx context.Context, id uint32) (project.Project, error)
	CreateProject(ctx context.Context, req admin.CreateProject) (project.Project, error)
	UpdateProject(ctx context.Context, id uint32, req admin.UpdateProject) (project.Project, error)
	DeleteProject(ctx context.Context, id uint32) error
	ListTokens(ctx context.Context, id uint32) ([]project.Token, error)
	CreateToken(ctx context.Context, id uint32, req admin.CreateToken) (admin.CreatedToken, error)
	RevokeToken(ctx context.Context, id uint32, tokenID string) (project.Token, error)
	ListEventTypes(ctx context.Context, id uint32) ([]project.EventType, error)
	CreateEventType(ctx context.Context, id uint32, b admin.EventTypeBody) (project.EventType, error)
	DeleteEventType(ctx context.Context, id uint32, slug string) error
	// Events returns a page of events and the cursor after it; wait > 0
	// long-polls a running server.
	Events(ctx context.Context, q eventlog.Query, wait time.Duration) (page, error)
	Live() bool // true when a server is running (new events can arrive)
	Close() error
}

type page struct {
	Events []json.RawMessage `json:"events"`
	Next   event.ID          `json:"next"`
	Head   event.ID          `json:"head"`
}

// target selects the server or data directory a command works on.
type target struct {
	dataDir  string
	adminURL string
}

func (t *target) register(fs *flag.FlagSet, env *Env) {
	dd := env.Getenv("SLUICE_DATA_DIR")
	if dd == "" {
		dd = config.Default().DataDir
	}
	fs.StringVar(&t.dataDir, "data-dir", dd, "data directory (env SLUICE_DATA_DIR); used directly when no server runs on it")
	fs.StringVar(&t.adminURL, "admin", env.Getenv(config.EnvAdminURL), "admin API base URL of a running server (env "+config.EnvAdminURL+"); found from the data directory when unset")
}

// envStorage is the variable of the storage setting.
const envStorage = "SLUICE_STORAGE"

// storageOf is the storage the nodes of this environment use, as serve
// reads it: SLUICE_STORAGE, else the file of SLUICE_CONFIG, else sqlite.
func storageOf(env *Env) (string, error) {
	if s := env.Getenv(envStorage); s != "" {
		return s, nil
	}
	if env.Getenv(config.EnvConfig) == "" || env.Environ == nil {
		return config.StorageSQLite, nil
	}
	cfg, err := config.Load("cli", nil, env.Getenv, env.Environ, io.Discard)
	if err != nil {
		return "", fmt.Errorf("the configuration of %s: %w", config.EnvConfig, err)
	}
	return cfg.Storage, nil
}

// access is what a command needs of the data directory when no server
// holds it.
type access int

const (
	reads      access = iota // a sluice state to read
	writes                   // a directory to write to: an empty one is prepared for a first start
	serverOnly               // nothing: the command works only through a server's API
)

// noDataDir is open's answer when the data directory does not exist.
type noDataDir string

func (d noDataDir) Error() string {
	return fmt.Sprintf("no data directory at %s, so no server runs on it: pass --data-dir with the directory your server uses (env SLUICE_DATA_DIR), or --admin with its admin API URL; `sluice serve --data-dir %s` starts one there",
		string(d), string(d))
}

// errNoServer is open's answer to a serverOnly command when no server
// holds the data directory.
var errNoServer = errors.New("no server is running")

// open picks the running server's API when there is one, else the data
// directory itself (storage sqlite). It never creates a directory: a
// mistyped --data-dir is an error, not a new empty installation.
func (t *target) open(env *Env, a access) (client, error) {
	token := env.Getenv(config.EnvAdminToken)
	if t.adminURL != "" {
		return newRemote(t.adminURL, token)
	}
	if fi, err := os.Stat(t.dataDir); err != nil || !fi.IsDir() {
		return nil, noDataDir(t.dataDir)
	}
	_, lerr := os.Stat(filepath.Join(t.dataDir, datadir.LockFile))
	_, serr := os.Stat(filepath.Join(t.dataDir, datadir.StateFile))
	if lerr != nil && serr != nil {
		// No sluice process ever used the directory.
		switch a {
		case writes:
			// Prepared only when empty: a mistyped --data-dir (a home
			// directory) gets no state.db.
			if entries, err := os.ReadDir(t.dataDir); err != nil || len(entries) > 0 {
				return nil, fmt.Errorf("%s holds no sluice data (no %s) and is not empty, so it is not prepared for a first start: pass --data-dir with the directory your server uses (env SLUICE_DATA_DIR), an empty directory, or --admin with its admin API URL",
					t.dataDir, datadir.StateFile)
			}
		case serverOnly:
			return nil, errNoServer
		default: // left untouched
			if storage, err := storageOf(env); err != nil || storage == config.StoragePostgres {
				return nil, cmp.Or(err, t.postgresNeedsServer())
			}
			return nil, noState(t.dataDir)
		}
	}
	lock, err := datadir.Acquire(t.dataDir)
	if err == nil && a == serverOnly {
		lock.Release()
		return nil, errNoServer
	}
	if err == nil {
		storage, err := storageOf(env)
		if err == nil && storage == config.StoragePostgres {
			// The state is in PostgreSQL, not in the data directory.
			err = t.postgresNeedsServer()
		}
		if err == nil && a == reads && serr != nil {
			err = noState(t.dataDir)
		}
		if err != nil {
			lock.Release()
			return nil, err
		}
		st, err := project.Open(filepath.Join(t.dataDir, datadir.StateFile), nil)
		if err != nil {
			lock.Release()
			return nil, err
		}
		return &local{lock: lock, state: st, dir: t.dataDir}, nil
	}
	if !errors.Is(err, datadir.ErrLocked) {
		return nil, err
	}
	info, ierr := datadir.ReadRunInfo(t.dataDir)
	if ierr != nil {
		return nil, fmt.Errorf("a sluice process holds %s but has not said where its admin API listens (%v); pass --admin", t.dataDir, ierr)
	}
	return newRemote(info.Admin, token)
}

func (t *target) postgresNeedsServer() error {
	return fmt.Errorf("no server runs on %s, and with storage postgres the CLI works through a node's admin API: pass --admin (or %s) with the URL of any node",
		t.dataDir, config.EnvAdminURL)
}

// noState is open's answer when a directory holds no sluice state.
type noState string

func (d noState) Error() string {
	return fmt.Sprintf("%s holds no sluice data (no %s) and no server runs on it: pass --data-dir with the directory your server uses (env SLUICE_DATA_DIR), or --admin with its admin API URL",
		string(d), datadir.StateFile)
}

// rediscover is the API to try next when c stopped answering, and
// whether to try it now. An --admin URL is tried again as given. A server
// found through the data directory is tried only once a live process has
// written run.json again (a stopped server removes it): until then the
// admin token is sent nowhere, not even to a stranger now listening on the
// old port. The server may come back on other ports.
func (t *target) rediscover(env *Env, c client) (client, bool) {
	if t.adminURL != "" {
		return c, true
	}
	info, err := datadir.ReadRunInfo(t.dataDir)
	if err != nil || !alive(info.PID) {
		return c, false
	}
	if r, ok := c.(*remote); ok && strings.TrimSuffix(info.Admin, "/") == r.base {
		return c, true
	}
	r, err := newRemote(info.Admin, env.Getenv(config.EnvAdminToken))
	if err != nil {
		return c, false
	}
	return r, true
}

// alive reports whether process pid exists.
func alive(pid int) bool {
	if pid <= 0 {
		return false
	}
	err := syscall.Kill(pid, 0)
	return err == nil || errors.Is(err, syscall.EPERM)
}

// server is the running server's API, for a command that works only
// through it; why says so when none runs.
func (t *target) server(env *Env, why string) (*remote, error) {
	c, err := t.open(env, serverOnly)
	if errors.Is(err, errNoServer) {
		return nil, fmt.Errorf("no server is running on %s: %s (start `sluice serve`, or pass --admin)", t.dataDir, why)
	}
	if err != nil {
		return nil, err
	}
	return c.(*remote), nil
}

// remote is the admin API of a running server.
type remote struct {
	base  string
	token string
	http  *http.Client
}

func newRemote(base, token string) (*remote, error) {
	if token == "" {
		return nil, fmt.Errorf("a server is running (admin API %s): set %s to its admin token", base, config.EnvAdminToken)
	}
	u, err := url.Parse(base)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("admin URL %q is not an http(s) URL", base)
	}
	return &remote{base: strings.TrimSuffix(base, "/"), token: token, http: &http.Client{Timeout: 2 * time.Minute}}, nil
}

func (r *remote) Live() bool   { return true }
func (r *remote) Close() error { return nil }

// unreachable is a request to the admin API that got no answer: the
// server is down, restarting, or the network is.
type unreachable struct{ err error }

func (u *unreachable) Error() string { return u.err.Error() }
func (u *unreachable) Unwrap() error { return u.err }

// call sends a request and decodes a JSON answer into out.
func (r *remote) call(ctx context.Context, method, path string, in, out any) error {
	var body io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return err
		}
		body = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, r.base+path, body)
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+r.token)
	if in != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := r.http.Do(req)
	if err != nil {
		return &unreachable{fmt.Errorf("admin API: %w", err)}
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return &unreachable{fmt.Errorf("admin API: %w", err)}
	}
	if resp.StatusCode >= 300 {
		var e struct {
			Message string            `json:"message"`
			Errors  event.FieldErrors `json:"errors"`
		}
		if resp.StatusCode == http.StatusServiceUnavailable {
			// Stopping or not ready: as good as no answer, for a caller
			// that waits for the server.
			if json.Unmarshal(b, &e) != nil || e.Message == "" {
				e.Message = "admin API answered " + resp.Status
			}
			return &unreachable{fmt.Errorf("%s (503)", e.Message)}
		}
		if json.Unmarshal(b, &e) == nil && e.Message != "" {
			// The message often is the errors already ("invalid: secret:
			// …"); they are added only when it does not say them.
			said := true
			for _, fe := range e.Errors {
				said = said && strings.Contains(e.Message, fe.Message)
			}
			if !said {
				return fmt.Errorf("%s (%d): %s", e.Message, resp.StatusCode, e.Errors.Error())
			}
			return fmt.Errorf("%s (%d)", e.Message, resp.StatusCode)
		}
		return fmt.Errorf("admin API answered %s", resp.Status)
	}
	if out != nil && resp.StatusCode != http.StatusNoContent {
		if err := json.Unmarshal(b, out); err != nil {
			return fmt.Errorf("admin API answer: %w", err)
		}
	}
	return nil
}

func pid(id uint32) string { return strconv.FormatUint(uint64(id), 10) }

func (r *remote) ListProjects(ctx context.Context) ([]project.Project, error) {
	var l admin.ProjectList
	return l.Projects, r.call(ctx, "GET", "/api/v1/projects", nil, &l)
}

func (r *remote) GetProject(ctx context.Context, id uint32) (project.Project, error) {
	var p project.Project
	return p, r.call(ctx, "GET", "/api/v1/projects/"+pid(id), nil, &p)
}

func (r *remote) CreateProject(ctx context.Context, req admin.CreateProject) (project.Project, error) {
	var p project.Project
	return p, r.call(ctx, "POST", "/api/v1/projects", req, &p)
}

func (r *remote) UpdateProject(ctx context.Context, id uint32, req admin.UpdateProject) (project.Project, error) {
	var p project.Project
	return p, r.call(ctx, "PATCH", "/api/v1/projects/"+pid(id), req, &p)
}

func (r *remote) DeleteProject(ctx context.Context, id uint32) error {
	return r.call(ctx, "DELETE", "/api/v1/projects/"+pid(id), nil, nil)
}

func (r *remote) ListTokens(ctx context.Context, id uint32) ([]project.Token, error) {
	var l admin.TokenList
	return l.Tokens, r.call(ctx, "GET", "/api/v1/projects/"+pid(id)+"/tokens", nil, &l)
}

func (r *remote) CreateToken(ctx context.Context, id uint32, req admin.CreateToken) (admin.CreatedToken, error) {
	var t admin.CreatedToken
	return t, r.call(ctx, "POST", "/api/v1/projects/"+pid(id)+"/tokens", req, &t)
}

func (r *remote) RevokeToken(ctx context.Context, id uint32, tokenID string) (project.Token, error) {
	var t project.Token
	return t, r.call(ctx, "DELETE", "/api/v1/projects/"+pid(id)+"/tokens/"+url.PathEscape(tokenID), nil, &t)
}

func (r *remote) ListEventTypes(ctx context.Context, id uint32) ([]project.EventType, error) {
	var l admin.EventTypeList
	return l.EventTypes, r.call(ctx, "GET", "/api/v1/projects/"+pid(id)+"/event-types", nil, &l)
}

func (r *remote) CreateEventType(ctx context.Context, id uint32, b admin.EventTypeBody) (project.EventType, error) {
	var et project.EventType
	return et, r.call(ctx, "POST", "/api/v1/projects/"+pid(id)+"/event-types", b, &et)
}

func (r *remote) DeleteEventType(ctx context.Context, id uint32, slug string) error {
	return r.call(ctx, "DELETE", "/api/v1/projects/"+pid(id)+"/event-types/"+url.PathEscape(slug), nil, nil)
}

func (r *remote) Events(ctx context.Context, q eventlog.Query, wait time.Duration) (page, error) {
	v := url.Values{}
	for _, p := range q.Projects {
		v.Add("project", pid(p))
	}
	if q.KeyGlob != "" {
		v.Set("key", q.KeyGlob)
	}
	if q.Since != 0 {
		v.Set("since", strconv.FormatInt(q.Since, 10))
	}
	if q.Until != 0 {
		v.Set("until", strconv.FormatInt(q.Until, 10))
	}
	if q.After != 0 {
		v.Set("after", q.After.String())
	}
	if q.Limit != 0 {
		v.Set("limit", strconv.Itoa(q.Limit))
	}
	if q.Newest {
		v.Set("newest", "true")
	}
	if wait > 0 {
		v.Set("wait", wait.String())
	}
	var p page
	return p, r.call(ctx, "GET", "/api/v1/events?"+v.Encode(), nil, &p)
}

// local works on the data directory while holding its lock.
type local struct {
	lock  *datadir.Lock
	state *project.Store
	dir   string
	log   *sqlite.Log
}

func (l *local) Live() bool { return false }

func (l *local) Close() error {
	var errs []error
	if l.log != nil {
		errs = append(errs, l.log.Close())
	}
	errs = append(errs, l.state.Close(), l.lock.Release())
	return errors.Join(errs...)
}

func (l *local) ListProjects(ctx context.Context) ([]project.Project, error) {
	return l.state.List(), nil
}

func (l *local) GetProject(ctx context.Context, id uint32) (project.Project, error) {
	p, ok := l.state.Get(id)
	if !ok {
		return project.Project{}, fmt.Errorf("project %d: %w", id, project.ErrNotFound)
	}
	return *p, nil
}

func (l *local) CreateProject(ctx context.Context, req admin.CreateProject) (project.Project, error) {
	return l.state.Create(ctx, req.ID, req.Name, req.Settings)
}

func (l *local) UpdateProject(ctx context.Context, id uint32, req admin.UpdateProject) (project.Project, error) {
	return l.state.Update(ctx, id, req.Name, req.Settings)
}

func (l *local) DeleteProject(ctx context.Context, id uint32) error {
	hs, err := storedHooks(ctx, l.dir)
	if err != nil {
		return err
	}
	if err := hook.InUse(id, hs); err != nil {
		return err
	}
	return l.state.Delete(ctx, id)
}

// storedHooks reads the hook definitions of a data directory whose lock
// is held (none when it has no hooks.db).
func storedHooks(ctx context.Context, dir string) ([]hook.Hook, error) {
	path := filepath.Join(dir, datadir.HooksFile)
	if _, err := os.Stat(path); err != nil {
		return nil, nil
	}
	st, err := hook.OpenSQLite(path)
	if err != nil {
		return nil, err
	}
	defer st.Close()
	return hook.Definitions(ctx, st)
}

func (l *local) ListTokens(ctx context.Context, id uint32) ([]project.Token, error) {
	return l.state.Tokens(ctx, id)
}

func (l *local) CreateToken(ctx context.Context, id uint32, req admin.CreateToken) (admin.CreatedToken, error) {
	t, secret, err := l.state.CreateToken(ctx, id, req.Name, req.Secret)
	return admin.CreatedToken{Token: t, Secret: secret}, err
}

func (l *local) RevokeToken(ctx context.Context, id uint32, tokenID string) (project.Token, error) {
	return l.state.RevokeToken(ctx, id, tokenID)
}

func (l *local) ListEventTypes(ctx context.Context, id uint32) ([]project.EventType, error) {
	return l.state.EventTypes(id)
}

func (l *local) CreateEventType(ctx context.Context, id uint32, b admin.EventTypeBody) (project.EventType, error) {
	return l.state.CreateEventType(ctx, project.EventType{ProjectID: id, Slug: b.Slug, Kind: b.Kind, Name: b.Name, Description: b.Description})
}

func (l *local) DeleteEventType(ctx context.Context, id uint32, slug string) error {
	return l.state.DeleteEventType(ctx, id, slug)
}

func (l *local) Events(ctx context.Context, q eventlog.Query, _ time.Duration) (page, error) {
	if l.log == nil {
		path := filepath.Join(l.dir, datadir.EventsFile)
		if _, err := os.Stat(path); errors.Is(err, os.ErrNotExist) {
			return page{Next: q.After}, nil // no event was ever stored here
		}
		lg, err := sqlite.Open(sqlite.Config{Path: path}, nil, nil)
		if err != nil {
			return page{}, err
		}
		l.log = lg
	}
	recs, err := l.log.Read(ctx, q)
	if err != nil {
		return page{}, err
	}
	p := page{Next: q.After, Head: l.log.Head()}
	for _, r := range recs {
		p.Events = append(p.Events, r.Body)
		p.Next = r.ID
	}
	return p, nil
}
