package main

import (
	"strings"
	"testing"
)

// The docs harness's own parts: where commands end, which comment lines
// are answers, and how answers match.
func TestDocHarnessSplitsCommands(t *testing.T) {
	block := strings.Split(`# prose at the start
curl -X POST http://h/x \
     -d '{"a":1,
          "b":2}'
# {"ok":true,
#   "more":1}

# prose after a blank line
cat > f.yaml <<'EOF'
name: x
EOF
A=$(echo "a # not a comment" | tr a b)   # a comment
echo "two" |
  cat
sluice hash email x@y.z
# exit 1: bad`, "\n")
	steps := blockSteps(block, 10)
	want := []struct {
		line    int
		prefix  string
		answer  bool
		lines   int
		exit    int
		hasJSON bool
	}{
		{11, "curl -X POST", true, 3, 0, true},
		{18, "cat > f.yaml", false, 3, 0, false},
		{21, "A=$(echo", false, 1, 0, false},
		{22, `echo "two" |`, false, 2, 0, false},
		{24, "sluice hash", true, 1, 1, false},
	}
	if len(steps) != len(want) {
		for _, s := range steps {
			t.Logf("%d: %q", s.line, s.text)
		}
		t.Fatalf("%d steps, want %d", len(steps), len(want))
	}
	for i, w := range want {
		s := steps[i]
		if s.line != w.line || !strings.HasPrefix(s.text, w.prefix) || s.expect.given != w.answer ||
			strings.Count(s.text, "\n")+1 != w.lines || s.expect.exit != w.exit || (s.expect.json != nil) != w.hasJSON {
			t.Errorf("step %d: line %d %q, answer %+v", i, s.line, s.text, s.expect)
		}
	}
	if steps[4].expect.text != "bad" {
		t.Errorf("exit text %q", steps[4].expect.text)
	}
}

func TestDocHarnessMatchesAnswers(t *testing.T) {
	cases := []struct {
		doc, stdout string
		statuses    []int
		code        int
		ok          bool
	}{
		// Ids, times and secrets by shape; the rest exactly.
		{`{"key":"in.gen.a.b","id":"7530470142887591936"}`, `{"id":"7533761803407327233","key":"in.gen.a.b"}`, []int{200}, 0, true},
		{`{"key":"in.gen.a.b","id":"7530…"}`, `{"key":"in.gen.a.b","id":"7533761803407327233"}`, []int{200}, 0, true},
		{`{"key":"in.gen.a.b","id":"7530…"}`, `{"key":"in.gen.a.b","id":"abc"}`, []int{200}, 0, false},
		{`{"key":"in.gen.a.b","id":"7530…"}`, `{"key":"in.gen.x.b","id":"7533761803407327233"}`, []int{200}, 0, false},
		{`{"key":"in.gen.a.b"}`, `{"key":"in.gen.a.b","extra":1}`, []int{200}, 0, false},
		{`{"key":"in.gen.a.b", …}`, `{"key":"in.gen.a.b","extra":1}`, []int{200}, 0, true},
		{`{"key":"in.gen.a.b","n":2}`, `{"key":"in.gen.a.b"}`, []int{200}, 0, false},
		{`{"n":2}`, `{"n":2.0}`, nil, 0, true},
		{`{"n":2}`, `{"n":3}`, nil, 0, false},
		{`{"n":2}`, `{"n":"2"}`, nil, 0, false},
		{`{"time":1795428000000}`, `{"time":1796188784458}`, nil, 0, true},
		{`{"time":1795428000000}`, `{"time":17}`, nil, 0, false},
		{`{"at":"2026-11-23T10:00:00Z"}`, `{"at":"2026-12-02T05:19:39.123Z"}`, nil, 0, true},
		{`{"at":"2026-11-23T10:00:00Z"}`, `{"at":"yesterday"}`, nil, 0, false},
		{`{"secret":"whsec_…"}`, `{"secret":"whsec_abc="}`, nil, 0, true},
		{`{"secret":"whsec_…"}`, `{"secret":"sl_abc"}`, nil, 0, false},
		{`{"m":"invalid JSON at byte 2: …"}`, `{"m":"invalid JSON at byte 2: invalid character"}`, nil, 0, true},
		{`{"a":[1,2]}`, `{"a":[1,2,3]}`, nil, 0, false},
		{`{"a":[1,2,…]}`, `{"a":[1,2,3]}`, nil, 0, true},
		{`{"a":[…]}`, `{"a":[]}`, nil, 0, true},
		{`{"a":null,"b":true}`, `{"a":null,"b":false}`, nil, 0, false},
		// Several JSON values: one each.
		{"{\"n\":1}\n{\"n\":2}", "{\"n\":1}\n{\"n\":2}\n", nil, 0, true},
		{"{\"n\":1}\n{\"n\":2}", "{\"n\":1}\n", nil, 0, false},
		// Statuses: documented, or every one 2xx.
		{`400 {"message":"…"}`, `{"message":"bad"}`, []int{400}, 0, true},
		{`400 {"message":"…"}`, `{"message":"bad"}`, []int{200}, 0, false},
		{`409`, `{"message":"taken"}`, []int{409}, 0, true},
		{``, `{}`, []int{200, 401}, 0, false},
		{``, ``, nil, 1, false},
		// Exit codes with text, and plain text line by line.
		{`exit 1: not found`, ``, nil, 1, false},
		{`exit 1: bad`, `a bad thing`, nil, 1, true},
		{`exit 1: bad`, `a bad thing`, nil, 0, false},
		{"project 1 (shop) created, application id app_…", "project 1 (shop) created, application id app_0b75de10aaf9\n", nil, 0, true},
		{"project 1 (shop) created, application id app_…", "project 2 (shop) created, application id app_0b75de10aaf9\n", nil, 0, false},
		{"ID  NAME\n0   default", "ID NAME\n0       default\n", nil, 0, true},
		{"ID  NAME\n0   default", "ID NAME\n", nil, 0, false},
	}
	for _, c := range cases {
		e := expectation{}
		if c.doc != "" {
			e = parseExpectation(c.doc)
		}
		why := e.check(result{code: c.code, stdout: c.stdout, statuses: c.statuses})
		if (why == "") != c.ok {
			t.Errorf("documented %q, got %q %v exit %d: ok %v (%s)", c.doc, c.stdout, c.statuses, c.code, why == "", why)
		}
	}
	if e := parseExpectation(`{"id":"hk_…" ← shown once}`); !strings.HasPrefix(e.text, "(unparsable") {
		t.Errorf("prose inside an answer parsed: %+v", e)
	}
}

func TestDocHarnessSkipRules(t *testing.T) {
	for cmd, skip := range map[string]bool{
		"sluice serve --config x.yaml": true, "sluice serve --data-dir /tmp/bench-data &": true, "make test": true,
		"go test ./...": true, "sluice bench -c 64": true, "wrk -t2 http://x": true, "sluice admin-token reset": true,
		"sluice project list": false, "curl http://x/serve": false, "sluice events tail --follow": false,
	} {
		if got := skipReason(cmd) != ""; got != skip {
			t.Errorf("%q: skipped %v, want %v", cmd, got, skip)
		}
	}
}
