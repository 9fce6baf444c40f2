package main

// The docs harness: every shell example of README.md and docs/*.md runs, in
// order, against one fresh server, and every documented answer is checked.
//
// Order: README.md, then the docs its "Documentation" list links, in that
// order, then any other docs/*.md by name (so a new document is picked up
// without touching this file). Every fenced block whose info string is sh,
// bash or shell runs, command by command, in ONE bash session across all
// documents: what one document creates or exports (a project, $APP_ID) is
// there for the next.
//
// A documented answer is the run of "# " comment lines directly under a
// command (no blank line between):
//
//	# {"id":"7530…","key":"in.track.transaction.completed"}   JSON, compared as values
//	# 400 {"message":"invalid JSON", …}                       an HTTP status (curl), then the body
//	# 409                                                     just the status
//	# exit 1: no server is running                           the exit code, and text in the output
//	# project 3 (outlet) created, application id app_…       plain text, line by line
//
// Volatile values match by shape, never wholesale: a documented flake id
// (16–20 digits, or digits and "…") matches any flake id; an RFC 3339 time
// any RFC 3339 time; a number of 10^12 or more (Unix ms) any such number;
// "…" inside a string any run of characters ("hk_…", "sl_…"); a bare …
// in an object allows more members, at the end of an array more elements.
// Everything else is exact, and an object has exactly the documented
// members. JSON answers may be several values (NDJSON); each is checked.
//
// A command without a documented answer must exit 0 (a pipeline fails when
// any part of it fails), and every HTTP answer curl got in it must be 2xx.
// Comment lines after a blank line, or at the start of a block, are prose.
//
// Rewrites, so the examples run as written: `go run ./cmd/sluice` and
// `./sluice` become the built binary (`sluice` on PATH is this test binary
// re-executing itself as the command), http://127.0.0.1:8080 and :8081 the
// test server's listeners; SLUICE_DATA_DIR points the CLI at the test
// server; `export SLUICE_ADMIN_TOKEN=sla_…` runs the export line of the
// server's own start banner; curl reports each status to the harness; a
// command with --follow runs in the background until it has printed its
// documented answer (at most ten seconds; one second when none is
// documented) and then gets SIGTERM, as Ctrl-C would stop it: it must exit
// 0, and what it printed is checked. GETs to the admin API whose
// answer does not match are retried for up to five seconds: profiles and
// deliveries lag the log by design.
//
// Commands that cannot run here are skipped by the rules in skipRules, each
// skip logged with its place (go test -v shows them).

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/sluicehq/sluice/internal/datadir"
)

// skipRules are the commands the harness does not run, and why.
var skipRules = []struct {
	re     *regexp.Regexp
	reason string
}{
	{regexp.MustCompile(`(^|[\s;&|(])sluice serve\b`), "the harness runs the server itself"},
	{regexp.MustCompile(`^(make|go (test|build|vet))\b`), "builds and the test suite: `make test` runs them"},
	{regexp.MustCompile(`^(wrk|sluice bench)\b`), "a load test, measured by hand (docs/benchmarks.md)"},
	{regexp.MustCompile(`^sluice admin-token reset\b`), "needs the server stopped"},
	{regexp.MustCompile(`(^|[\s;&|(])sluice migrate\b`), "needs a PostgreSQL server and a stopped data directory (cmd/sluice/migrate_test.go runs it)"},
}

const (
	followMax  = 10 * time.Second // longest a --follow command runs
	followBare = time.Second      // how long one without a documented answer runs
)

func TestDocExamples(t *testing.T) {
	if _, err := exec.LookPath("bash"); err != nil {
		t.Fatal("the docs harness needs bash")
	}
	realCurl, err := exec.LookPath("curl")
	if err != nil {
		t.Fatal("the docs harness needs curl (Debian: apt-get install curl; scripts/deps.sh installs it)")
	}
	self, err := filepath.Abs(os.Args[0])
	if err != nil {
		t.Fatal(err)
	}
	docs := docOrder(t)
	t.Logf("documents, in order: %s", strings.Join(docs, ", "))

	// The server, with a generated admin token as a new user gets it.
	dir := t.TempDir()
	srv := exec.Command(self, "serve", "--listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0", "--data-dir", dir, "--log-format", "json")
	srv.Env = append(cleanEnv(), "SLUICE_E2E_CHILD=1")
	banner, srvLog := &syncBuffer{}, &syncBuffer{}
	srv.Stdout, srv.Stderr = banner, srvLog
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Process.Kill(); srv.Wait() })
	var info datadir.RunInfo
	for deadline := time.Now().Add(60 * time.Second); ; {
		if info, err = datadir.ReadRunInfo(dir); err == nil && info.PID == srv.Process.Pid {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("server did not start:\n%s", srvLog.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
	exportToken := regexp.MustCompile(`(?m)^\s*(export SLUICE_ADMIN_TOKEN=sla_\S+)$`).FindStringSubmatch(banner.String())
	if exportToken == nil {
		t.Fatalf("no admin token in the banner:\n%s", banner.String())
	}

	// PATH: sluice is this binary; curl tells the harness every status.
	bin := t.TempDir()
	writeExec(t, filepath.Join(bin, "sluice"), fmt.Sprintf("#!/bin/sh\nSLUICE_E2E_CHILD=1 GORACE=\"atexit_sleep_ms=0 $GORACE\" exec %q \"$@\"\n", self))
	writeExec(t, filepath.Join(bin, "curl"), fmt.Sprintf("#!/bin/sh\nexec %q -sS -w '%%{stderr}\\n@@status %%{http_code}\\n' \"$@\"\n", realCurl))

	work := t.TempDir()
	sh := newShell(t, work, append(cleanEnv(),
		"PATH="+bin+string(os.PathListSeparator)+os.Getenv("PATH"),
		"HOME="+work, "SLUICE_DATA_DIR="+dir, "LC_ALL=C.UTF-8"))
	rw := strings.NewReplacer(
		"go run ./cmd/sluice", "sluice",
		"http://127.0.0.1:8080", info.Ingest,
		"http://127.0.0.1:8081", info.Admin,
	)
	dotSluice := regexp.MustCompile(`(^|[\s;&|(])\./sluice\b`)

	ran, skipped := 0, 0
	for _, doc := range docs {
		src, err := os.ReadFile(filepath.Join("../..", doc))
		if err != nil {
			t.Fatal(err)
		}
		steps := parseSteps(doc, string(src))
		t.Run(strings.TrimSuffix(filepath.Base(doc), ".md"), func(t *testing.T) {
			for _, st := range steps {
				where := fmt.Sprintf("%s:%d", doc, st.line)
				cmd := rw.Replace(st.text)
				cmd = dotSluice.ReplaceAllString(cmd, "${1}sluice")
				first := strings.TrimSpace(cmd)
				if skip := skipReason(first); skip != "" {
					t.Logf("%s: skipped (%s): %s", where, skip, oneLine(st.text))
					skipped++
					continue
				}
				if regexp.MustCompile(`^export SLUICE_ADMIN_TOKEN=sla_…`).MatchString(first) {
					cmd = exportToken[1]
				}
				ran++
				began := time.Now()
				var res result
				if strings.Contains(cmd, "--follow") {
					res = sh.follow(cmd, st.expect)
				} else {
					res = sh.run(cmd)
				}
				if d := time.Since(began); d > time.Second {
					t.Logf("%s: took %v: %s", where, d.Round(10*time.Millisecond), oneLine(st.text))
				}
				problem := st.expect.check(res)
				if problem != "" && isAdminRead(cmd, info.Admin) {
					for deadline := time.Now().Add(5 * time.Second); problem != "" && time.Now().Before(deadline); {
						time.Sleep(100 * time.Millisecond)
						res = sh.run(cmd)
						problem = st.expect.check(res)
					}
				}
				if problem != "" {
					t.Errorf("%s: %s\n$ %s\nexit %d, HTTP %v\nstdout:\n%s\nstderr:\n%s", where, problem, cmd, res.code, res.statuses, res.stdout, res.stderr)
				}
			}
		})
	}
	t.Logf("%d commands run, %d skipped by rule", ran, skipped)
	if ran < 40 {
		t.Errorf("only %d commands ran: is the parser missing blocks?", ran)
	}
}

// docOrder is README.md, the docs its Documentation list links in order,
// then every other docs/*.md by name.
func docOrder(t *testing.T) []string {
	t.Helper()
	readme, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	order := []string{"README.md"}
	seen := map[string]bool{}
	if _, list, ok := strings.Cut(string(readme), "\n## Documentation\n"); ok {
		if i := strings.Index(list, "\n## "); i >= 0 {
			list = list[:i]
		}
		for _, m := range regexp.MustCompile(`\]\((docs/[A-Za-z0-9_.-]+\.md)\)`).FindAllStringSubmatch(list, -1) {
			if !seen[m[1]] {
				seen[m[1]] = true
				order = append(order, m[1])
			}
		}
	}
	all, _ := filepath.Glob("../../docs/*.md")
	sort.Strings(all)
	for _, p := range all {
		d := "docs/" + filepath.Base(p)
		if !seen[d] {
			seen[d] = true
			order = append(order, d)
		}
	}
	if len(order) < 5 {
		t.Fatalf("documents: %v", order)
	}
	return order
}

func skipReason(cmd string) string {
	for _, r := range skipRules {
		if r.re.MatchString(cmd) {
			return r.reason
		}
	}
	return ""
}

// isAdminRead is a curl GET of the admin API: safe to repeat.
func isAdminRead(cmd, admin string) bool {
	return strings.HasPrefix(cmd, "curl ") && strings.Contains(cmd, admin) &&
		!regexp.MustCompile(`\s(-X|-d|--data\S*|-F|-T|--json)\s`).MatchString(cmd+" ")
}

func cleanEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "SLUICE_") {
			env = append(env, kv)
		}
	}
	return env
}

func writeExec(t *testing.T, path, body string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(body), 0o755); err != nil {
		t.Fatal(err)
	}
}

func oneLine(s string) string {
	s = strings.Join(strings.Fields(s), " ")
	if len(s) > 100 {
		s = s[:100] + "…"
	}
	return s
}

// A step is one shell command of a document and its documented answer.
type step struct {
	line   int
	text   string
	expect expectation
}

// parseSteps splits the runnable fenced blocks of a Markdown document into
// commands and their documented answers.
func parseSteps(doc, src string) []step {
	var steps []step
	lines := strings.Split(src, "\n")
	fence := regexp.MustCompile("^```\\s*([A-Za-z]*)")
	for i := 0; i < len(lines); i++ {
		m := fence.FindStringSubmatch(lines[i])
		if m == nil {
			continue
		}
		lang := m[1]
		j := i + 1
		for j < len(lines) && !strings.HasPrefix(lines[j], "```") {
			j++
		}
		if lang == "sh" || lang == "bash" || lang == "shell" {
			steps = append(steps, blockSteps(lines[i+1:j], i+2)...)
		}
		i = j
	}
	return steps
}

func blockSteps(lines []string, firstLine int) []step {
	var steps []step
	var cur []string
	var sc shellScanner
	start := 0
	afterCommand := false // the previous line ended a command or its answer
	var answer []string
	flushAnswer := func() {
		if len(steps) > 0 && answer != nil {
			steps[len(steps)-1].expect = parseExpectation(strings.Join(answer, "\n"))
		}
		answer = nil
	}
	for k, l := range lines {
		if len(cur) == 0 {
			trimmed := strings.TrimSpace(l)
			switch {
			case trimmed == "":
				flushAnswer()
				afterCommand = false
				continue
			case strings.HasPrefix(trimmed, "#"):
				if afterCommand {
					answer = append(answer, strings.TrimPrefix(strings.TrimPrefix(trimmed, "#"), " "))
				}
				continue
			}
			flushAnswer()
			start = k
			sc = shellScanner{}
		}
		cur = append(cur, l)
		if sc.line(l) {
			steps = append(steps, step{line: firstLine + start, text: strings.Join(cur, "\n")})
			cur = nil
			afterCommand = true
		}
	}
	if len(cur) > 0 {
		steps = append(steps, step{line: firstLine + start, text: strings.Join(cur, "\n")})
	}
	flushAnswer()
	return steps
}

// shellScanner follows quotes, continuations and here-documents over the
// lines of a command, enough to tell where the command ends.
type shellScanner struct {
	single, double bool
	heredoc        string // terminator awaited
	heredocTabs    bool
	pendingDoc     []string
}

var heredocRe = regexp.MustCompile(`^<<(-?)\s*['"]?([A-Za-z_][A-Za-z0-9_]*)['"]?`)

// line consumes one line and reports whether the command is complete.
func (s *shellScanner) line(l string) bool {
	if s.heredoc != "" {
		t := l
		if s.heredocTabs {
			t = strings.TrimLeft(l, "\t")
		}
		if t == s.heredoc {
			s.heredoc = ""
			if len(s.pendingDoc) > 0 {
				s.heredoc, s.pendingDoc = s.pendingDoc[0], s.pendingDoc[1:]
				return false
			}
			return true
		}
		return false
	}
	cont := false
	code := strings.Builder{} // the line outside quotes, for operators
	for i := 0; i < len(l); i++ {
		c := l[i]
		switch {
		case s.single:
			if c == '\'' {
				s.single = false
			}
		case c == '\\':
			if i == len(l)-1 {
				cont = true
			}
			i++
		case s.double:
			if c == '"' {
				s.double = false
			}
		case c == '\'':
			s.single = true
		case c == '"':
			s.double = true
		case c == '#' && (i == 0 || l[i-1] == ' ' || l[i-1] == '\t'):
			i = len(l)
		case c == '<' && strings.HasPrefix(l[i:], "<<"):
			if m := heredocRe.FindStringSubmatch(l[i:]); m != nil && strings.HasPrefix(l[i:], m[0]) {
				if s.heredoc == "" {
					s.heredoc, s.heredocTabs = m[2], m[1] == "-"
				} else {
					s.pendingDoc = append(s.pendingDoc, m[2])
				}
				i += len(m[0]) - 1
			} else {
				code.WriteByte(c)
			}
		default:
			code.WriteByte(c)
		}
	}
	if s.single || s.double || cont {
		return false
	}
	if s.heredoc != "" {
		return false
	}
	end := strings.TrimSpace(code.String())
	return !(strings.HasSuffix(end, "|") || strings.HasSuffix(end, "&&") || strings.HasSuffix(end, "||"))
}

// result is what one command did.
type result struct {
	code           int
	stdout, stderr string
	statuses       []int // HTTP statuses curl got, in order
}

// shell is one bash session; every command runs in it, so variables and
// the working directory carry from one to the next.
type shell struct {
	t     *testing.T
	cmd   *exec.Cmd
	in    io.Writer
	out   *bufio.Reader
	dir   string
	count int
}

func newShell(t *testing.T, dir string, env []string) *shell {
	t.Helper()
	cmd := exec.Command("bash", "--noprofile", "--norc")
	cmd.Dir, cmd.Env = dir, env
	in, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { in.Close(); cmd.Process.Kill(); cmd.Wait() })
	// A pipeline fails when any part of it fails, not only the last.
	fmt.Fprintln(in, "set -o pipefail")
	return &shell{t: t, cmd: cmd, in: in, out: bufio.NewReader(out), dir: t.TempDir()}
}

var statusLine = regexp.MustCompile(`(?m)^@@status (\d{3})\n?`)

// run sources the command in the session, its output into files, and waits
// for the marker that says it finished.
func (s *shell) run(command string) result {
	s.t.Helper()
	s.count++
	base := filepath.Join(s.dir, strconv.Itoa(s.count))
	if err := os.WriteFile(base+".sh", []byte(command+"\n"), 0o600); err != nil {
		s.t.Fatal(err)
	}
	marker := fmt.Sprintf("@@done %d", s.count)
	fmt.Fprintf(s.in, "{ . %q ; } >%q 2>%q </dev/null; echo \"%s $?\"\n", base+".sh", base+".out", base+".err", marker)
	type line struct {
		s   string
		err error
	}
	got := make(chan line, 1)
	go func() {
		for {
			l, err := s.out.ReadString('\n')
			if err != nil || strings.HasPrefix(l, marker+" ") {
				got <- line{l, err}
				return
			}
		}
	}()
	var l line
	select {
	case l = <-got:
	case <-time.After(60 * time.Second):
		s.t.Fatalf("command did not finish in 60 s:\n%s", command)
	}
	if l.err != nil {
		s.t.Fatalf("the shell died (%v) running:\n%s", l.err, command)
	}
	var r result
	r.code, _ = strconv.Atoi(strings.TrimSpace(strings.TrimPrefix(l.s, marker+" ")))
	o, _ := os.ReadFile(base + ".out")
	e, _ := os.ReadFile(base + ".err")
	r.stdout = string(o)
	for _, m := range statusLine.FindAllStringSubmatch(string(e), -1) {
		n, _ := strconv.Atoi(m[1])
		r.statuses = append(r.statuses, n)
	}
	r.stderr = statusLine.ReplaceAllString(string(e), "")
	return r
}

// follow runs a command that does not end by itself in the background,
// until its output matches e (or followMax; followBare without an answer),
// then stops it with SIGTERM and waits for its exit code.
func (s *shell) follow(command string, e expectation) result {
	s.t.Helper()
	if strings.Contains(strings.TrimSpace(command), "\n") {
		s.t.Fatalf("a --follow command must be one line:\n%s", command)
	}
	s.count++
	base := filepath.Join(s.dir, strconv.Itoa(s.count))
	// timeout passes the SIGTERM on and exits with the command's status.
	fmt.Fprintf(s.in, "timeout --preserve-status -s TERM %d %s >%q 2>%q </dev/null & FOLLOW_PID=$!\n",
		int(followMax.Seconds())+5, stripComment(command), base+".out", base+".err")
	read := func() result {
		o, _ := os.ReadFile(base + ".out")
		return result{stdout: string(o)}
	}
	deadline := time.Now().Add(followMax)
	if !e.given {
		deadline = time.Now().Add(followBare)
	}
	for time.Now().Before(deadline) && !(e.given && e.check(read()) == "") {
		time.Sleep(50 * time.Millisecond)
	}
	return s.run(fmt.Sprintf("kill -TERM $FOLLOW_PID; wait $FOLLOW_PID; code=$?; cat %q; cat %q >&2; exit_code() { return $1; }; exit_code $code", base+".out", base+".err"))
}

// stripComment cuts a trailing shell comment off a one-line command.
func stripComment(l string) string {
	single, double := false, false
	for i := 0; i < len(l); i++ {
		switch c := l[i]; {
		case single:
			single = c != '\''
		case c == '\\':
			i++
		case double:
			double = c != '"'
		case c == '\'':
			single = true
		case c == '"':
			double = true
		case c == '#' && (i == 0 || l[i-1] == ' ' || l[i-1] == '\t'):
			return strings.TrimSpace(l[:i])
		}
	}
	return strings.TrimSpace(l)
}

// expectation is a documented answer.
type expectation struct {
	given  bool
	status int    // HTTP status of the last curl, 0: any 2xx for all
	exit   int    // exit code
	text   string // plain text answer; with exit, text the output contains
	json   []pattern
}

var (
	statusRe = regexp.MustCompile(`^(\d{3})(?:\s+(.*))?$`)
	exitRe   = regexp.MustCompile(`^exit (\d+)(?::\s*(.*))?$`)
)

func parseExpectation(s string) expectation {
	e := expectation{given: true}
	s = strings.TrimSpace(s)
	if m := exitRe.FindStringSubmatch(s); m != nil {
		e.exit, _ = strconv.Atoi(m[1])
		e.text = m[2]
		return e
	}
	if m := statusRe.FindStringSubmatch(strings.SplitN(s, "\n", 2)[0]); m != nil {
		e.status, _ = strconv.Atoi(m[1])
		s = strings.TrimSpace(strings.TrimPrefix(s, m[1]))
	}
	if strings.HasPrefix(s, "{") || strings.HasPrefix(s, "[") {
		p := &patternParser{s: s}
		for p.skipSpace(); p.i < len(p.s); p.skipSpace() {
			v, err := p.value()
			if err != nil {
				e.text = "(unparsable answer: " + err.Error() + ")"
				e.json = nil
				return e
			}
			e.json = append(e.json, v)
		}
		return e
	}
	e.text = s
	return e
}

// check returns what is wrong with r, or "".
func (e expectation) check(r result) string {
	if strings.HasPrefix(e.text, "(unparsable answer") {
		return "the documented answer is not valid: " + e.text
	}
	if r.code != e.exit {
		return fmt.Sprintf("exit %d, documented %d", r.code, e.exit)
	}
	if e.status != 0 {
		if len(r.statuses) == 0 || r.statuses[len(r.statuses)-1] != e.status {
			return fmt.Sprintf("HTTP %v, documented %d", r.statuses, e.status)
		}
	} else {
		for _, st := range r.statuses {
			if st < 200 || st > 299 {
				return fmt.Sprintf("HTTP %d without a documented status (write `# %d …` under the command if it is meant)", st, st)
			}
		}
	}
	if !e.given {
		return ""
	}
	if e.exit != 0 {
		if e.text != "" && !globLiteral("…"+e.text+"…", r.stdout+r.stderr) {
			return fmt.Sprintf("output lacks %q", e.text)
		}
		return ""
	}
	if e.json != nil {
		dec := json.NewDecoder(strings.NewReader(r.stdout))
		dec.UseNumber()
		var got []any
		for {
			var v any
			err := dec.Decode(&v)
			if errors.Is(err, io.EOF) {
				break
			}
			if err != nil {
				return fmt.Sprintf("answer is not JSON: %v", err)
			}
			got = append(got, v)
		}
		if len(got) != len(e.json) {
			return fmt.Sprintf("%d JSON values, documented %d", len(got), len(e.json))
		}
		for i := range got {
			if why := e.json[i].match(got[i], "$"); why != "" {
				return why
			}
		}
		return ""
	}
	if e.text != "" {
		want := strings.Split(normSpace(e.text), "\n")
		have := strings.Split(normSpace(r.stdout), "\n")
		if len(want) != len(have) {
			return fmt.Sprintf("%d lines of output, documented %d", len(have), len(want))
		}
		for i := range want {
			if !globLiteral(want[i], have[i]) {
				return fmt.Sprintf("line %d is %q, documented %q", i+1, have[i], want[i])
			}
		}
	}
	return ""
}

// normSpace trims the text and folds runs of blanks (table alignment).
func normSpace(s string) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	for i, l := range lines {
		lines[i] = strings.Join(strings.Fields(l), " ")
	}
	return strings.Join(lines, "\n")
}

// A pattern is a documented JSON value.
type pattern struct {
	kind    byte // 'o' object, 'a' array, 's' string, 'n' number, 'l' literal
	keys    []string
	members map[string]pattern
	elems   []pattern
	open    bool // … : more members or elements allowed
	str     string
}

var (
	idShape   = regexp.MustCompile(`^[0-9]{16,20}$|^[0-9]+…$`)
	timeShape = regexp.MustCompile(`^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}`)
)

func (p pattern) match(v any, path string) string {
	switch p.kind {
	case 'o':
		m, ok := v.(map[string]any)
		if !ok {
			return fmt.Sprintf("%s: got %s, documented an object", path, show(v))
		}
		for _, k := range p.keys {
			got, ok := m[k]
			if !ok {
				return fmt.Sprintf("%s.%s: missing", path, k)
			}
			if why := p.members[k].match(got, path+"."+k); why != "" {
				return why
			}
		}
		if !p.open {
			for k := range m {
				if _, ok := p.members[k]; !ok {
					return fmt.Sprintf("%s.%s: not documented (got %s; add it, or … for more members)", path, k, show(m[k]))
				}
			}
		}
	case 'a':
		a, ok := v.([]any)
		if !ok {
			return fmt.Sprintf("%s: got %s, documented an array", path, show(v))
		}
		if len(a) < len(p.elems) || (!p.open && len(a) != len(p.elems)) {
			return fmt.Sprintf("%s: %d elements, documented %d", path, len(a), len(p.elems))
		}
		for i, e := range p.elems {
			if why := e.match(a[i], fmt.Sprintf("%s[%d]", path, i)); why != "" {
				return why
			}
		}
	case 's':
		s, ok := v.(string)
		if !ok {
			return fmt.Sprintf("%s: got %s, documented a string", path, show(v))
		}
		switch {
		case idShape.MatchString(p.str):
			if !regexp.MustCompile(`^[0-9]{16,20}$`).MatchString(s) {
				return fmt.Sprintf("%s: %q is not an id like %q", path, s, p.str)
			}
		case timeShape.MatchString(p.str) && !strings.Contains(p.str, "…"):
			if _, err := time.Parse(time.RFC3339Nano, s); err != nil {
				return fmt.Sprintf("%s: %q is not an RFC 3339 time like %q", path, s, p.str)
			}
		case strings.Contains(p.str, "…"):
			if !globLiteral(p.str, s) {
				return fmt.Sprintf("%s: %q does not match %q", path, s, p.str)
			}
		case s != p.str:
			return fmt.Sprintf("%s: %q, documented %q", path, s, p.str)
		}
	case 'n':
		n, ok := v.(json.Number)
		if !ok {
			return fmt.Sprintf("%s: got %s, documented a number", path, show(v))
		}
		want, _ := strconv.ParseFloat(p.str, 64)
		got, _ := strconv.ParseFloat(string(n), 64)
		if want >= 1e12 {
			if got < 1e12 || got != float64(int64(got)) {
				return fmt.Sprintf("%s: %s is not a Unix ms time like %s", path, n, p.str)
			}
		} else if got != want {
			return fmt.Sprintf("%s: %s, documented %s", path, n, p.str)
		}
	case 'l':
		b, _ := json.Marshal(v)
		if string(b) != p.str {
			return fmt.Sprintf("%s: %s, documented %s", path, b, p.str)
		}
	}
	return ""
}

// globLiteral matches s against p, where each … stands for any run of
// characters and everything else for itself.
func globLiteral(p, s string) bool {
	parts := strings.Split(p, "…")
	if len(parts) == 1 {
		return s == p
	}
	if !strings.HasPrefix(s, parts[0]) {
		return false
	}
	s = s[len(parts[0]):]
	last := parts[len(parts)-1]
	for _, part := range parts[1 : len(parts)-1] {
		j := strings.Index(s, part)
		if j < 0 {
			return false
		}
		s = s[j+len(part):]
	}
	return len(s) >= len(last) && strings.HasSuffix(s, last)
}

func show(v any) string {
	b, _ := json.Marshal(v)
	if len(b) > 80 {
		return string(b[:80]) + "…"
	}
	return string(b)
}

// patternParser reads JSON with … allowed as a value, member or element.
type patternParser struct {
	s string
	i int
}

func (p *patternParser) skipSpace() {
	for p.i < len(p.s) && strings.ContainsRune(" \t\r\n", rune(p.s[p.i])) {
		p.i++
	}
}

func (p *patternParser) ellipsis() bool {
	p.skipSpace()
	if strings.HasPrefix(p.s[p.i:], "…") {
		p.i += len("…")
		return true
	}
	return false
}

func (p *patternParser) expect(c byte) error {
	p.skipSpace()
	if p.i >= len(p.s) || p.s[p.i] != c {
		return fmt.Errorf("want %q at offset %d of %q", c, p.i, p.s)
	}
	p.i++
	return nil
}

func (p *patternParser) value() (pattern, error) {
	p.skipSpace()
	if p.i >= len(p.s) {
		return pattern{}, errors.New("unexpected end")
	}
	switch c := p.s[p.i]; {
	case c == '{':
		p.i++
		o := pattern{kind: 'o', members: map[string]pattern{}}
		for first := true; ; first = false {
			p.skipSpace()
			if p.i < len(p.s) && p.s[p.i] == '}' {
				p.i++
				return o, nil
			}
			if !first {
				if err := p.expect(','); err != nil {
					return o, err
				}
			}
			if p.ellipsis() {
				o.open = true
				continue
			}
			k, err := p.value()
			if err != nil || k.kind != 's' {
				return o, fmt.Errorf("want a member name at offset %d", p.i)
			}
			if err := p.expect(':'); err != nil {
				return o, err
			}
			v, err := p.value()
			if err != nil {
				return o, err
			}
			o.keys = append(o.keys, k.str)
			o.members[k.str] = v
		}
	case c == '[':
		p.i++
		a := pattern{kind: 'a'}
		for first := true; ; first = false {
			p.skipSpace()
			if p.i < len(p.s) && p.s[p.i] == ']' {
				p.i++
				return a, nil
			}
			if !first {
				if err := p.expect(','); err != nil {
					return a, err
				}
			}
			if p.ellipsis() {
				a.open = true
				continue
			}
			v, err := p.value()
			if err != nil {
				return a, err
			}
			a.elems = append(a.elems, v)
		}
	case c == '"':
		dec := json.NewDecoder(strings.NewReader(p.s[p.i:]))
		var s string
		if err := dec.Decode(&s); err != nil {
			return pattern{}, err
		}
		p.i += int(dec.InputOffset())
		return pattern{kind: 's', str: s}, nil
	case c == '-' || (c >= '0' && c <= '9'):
		j := p.i
		for j < len(p.s) && strings.ContainsRune("+-.eE0123456789", rune(p.s[j])) {
			j++
		}
		n := p.s[p.i:j]
		p.i = j
		if _, err := strconv.ParseFloat(n, 64); err != nil {
			return pattern{}, err
		}
		return pattern{kind: 'n', str: n}, nil
	default:
		for _, lit := range []string{"true", "false", "null"} {
			if strings.HasPrefix(p.s[p.i:], lit) {
				p.i += len(lit)
				return pattern{kind: 'l', str: lit}, nil
			}
		}
		r, _ := utf8.DecodeRuneInString(p.s[p.i:])
		return pattern{}, fmt.Errorf("unexpected %q at offset %d of %q", r, p.i, p.s)
	}
}
