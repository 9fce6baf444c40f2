package hook

import (
	"context"
	"strings"
	"testing"

	standardwebhooks "github.com/standard-webhooks/standard-webhooks/libraries/go"
	"gopkg.in/yaml.v3"
)

const provisionYAML = `
- id: crm-revenue
  name: revenue to CRM
  active: true
  project_id: 7
  events: [in.gen.calltrack.*]
  http:
    url: %URL%
    auth: {type: bearer, token: target-token}
  max_batch_size: 2
  batch_timeout: 20ms
  signing_secret: whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw
  custom_data: {campaign: Black Friday}
- id: audit
  name: everything, stopped
  active: false
  events: ["in.**"]
  http: {url: %URL%}
`

func provisionSpecs(t *testing.T, url string) []Spec {
	t.Helper()
	var specs []Spec
	dec := yaml.NewDecoder(strings.NewReader(strings.ReplaceAll(provisionYAML, "%URL%", url)))
	dec.KnownFields(true)
	if err := dec.Decode(&specs); err != nil {
		t.Fatal(err)
	}
	return specs
}

func TestProvision(t *testing.T) {
	f := newFixture(t, true)
	rc := newReceiver(t, nil)
	specs := provisionSpecs(t, rc.URL)
	if err := f.m.Provision(context.Background(), specs, nil); err != nil {
		t.Fatal(err)
	}
	crm, err := f.m.Get("crm-revenue")
	if err != nil || !crm.Active || *crm.ProjectID != 7 || crm.MaxBatchSize != 2 || crm.CustomData["campaign"] != "Black Friday" || crm.RetryTimes == nil || *crm.RetryTimes != DefaultRetryTimes {
		t.Fatalf("crm %+v %v", crm, err)
	}
	if audit, _ := f.m.Get("audit"); audit.Active {
		t.Fatal("audit was declared stopped")
	}
	// Delivered and signed with the declared secret.
	f.appendEvents("in.gen.calltrack.call", 7, 2)
	// Both events, in one batch or (on a loaded machine, past the 20 ms
	// batch timeout) two.
	messages := func() (n int) {
		for _, r := range rc.requests() {
			n += len(r.msgs)
		}
		return n
	}
	waitFor(t, "a batch", func() bool { return messages() == 2 })
	req := rc.requests()[0]
	wh, _ := standardwebhooks.NewWebhook(specs[0].SigningSecret)
	if err := wh.Verify(req.body, req.header); err != nil {
		t.Fatalf("signature with the declared secret: %v", err)
	}
	if req.header.Get("Authorization") != "Bearer target-token" {
		t.Fatalf("auth %q", req.header.Get("Authorization"))
	}

	// The operator stops it; a restart with the same YAML changes nothing
	// (it stays stopped, at its place).
	if _, err := f.m.Stop(context.Background(), "crm-revenue"); err != nil {
		t.Fatal(err)
	}
	before, _ := f.m.Get("crm-revenue")
	f.m.Close()
	f.open(true)
	if err := f.m.Provision(context.Background(), specs, nil); err != nil {
		t.Fatal(err)
	}
	after, _ := f.m.Get("crm-revenue")
	if after.Active || after.Cursor != before.Cursor || !after.UpdatedAt.Equal(before.UpdatedAt) {
		t.Fatalf("re-provisioning the same YAML changed the hook: %+v → %+v", before, after)
	}

	// A changed definition and secret are applied, keeping place and state;
	// the previous secret keeps signing during the rotation.
	specs[0].MaxBatchSize = 1
	specs[0].Filter = "event.data.amount > 0"
	specs[0].SigningSecret = NewSecret()
	if err := f.m.Provision(context.Background(), specs, nil); err != nil {
		t.Fatal(err)
	}
	after, _ = f.m.Get("crm-revenue")
	if after.MaxBatchSize != 1 || after.Filter == "" || after.Active || after.Cursor != before.Cursor {
		t.Fatalf("updated %+v", after)
	}
	if _, err := f.m.Activate(context.Background(), "crm-revenue", nil); err != nil {
		t.Fatal(err)
	}
	sent := len(rc.requests())
	f.appendEvents("in.gen.calltrack.call", 7, 2) // amount 0 filtered out
	// A batch delivered before the stop but not yet marked so may come
	// again first (at least once, with its webhook-id): the new batch is
	// the first with an id not seen before.
	fresh := func() (received, bool) {
		seen := map[string]bool{}
		rs := rc.requests()
		for i, r := range rs {
			id := r.header.Get("webhook-id")
			if i >= sent && !seen[id] {
				return r, true
			}
			seen[id] = true
		}
		return received{}, false
	}
	waitFor(t, "the new batch", func() bool { _, ok := fresh(); return ok })
	req, _ = fresh()
	wh, _ = standardwebhooks.NewWebhook(specs[0].SigningSecret)
	if err := wh.Verify(req.body, req.header); err != nil || len(req.msgs) != 1 || strings.Count(req.header.Get("webhook-signature"), "v1,") != 2 {
		t.Fatalf("after re-provisioning: %v, %d messages, signatures %q", err, len(req.msgs), req.header.Get("webhook-signature"))
	}

	// Refused specs name the entry.
	for _, tc := range []struct {
		mut  func(*Spec)
		want string
	}{
		{func(s *Spec) { s.ID = "Bad ID" }, "hooks.provision[0] (Bad ID): id:"},
		{func(s *Spec) { s.SigningSecret = "nope" }, "signing_secret: a signing secret starts with whsec_"},
		{func(s *Spec) { s.Filter = "event.data.amount >" }, "filter:"},
		{func(s *Spec) { s.StartFrom = "yesterday" }, `start_from: "yesterday" is neither "now" nor an RFC 3339 time`},
		{func(s *Spec) { s.StartFrom = "2999-01-01T00:00:00Z" }, `start_from: 2999-01-01T00:00:00Z is in the future: start from "now" or from a past time`},
		{func(s *Spec) { httpOf(&s.Hook).Headers = map[string]string{"X-A": "1\r\n2"} }, `http.headers["X-A"]: the value has a CR, LF`},
		// A project that does not exist: for a declared hook that exists
		// (an update) and for a new one.
		{func(s *Spec) { s.ProjectID = new(uint32(99)) }, "hooks.provision[0] (crm-revenue): project 99: not found: project_id: project 99 does not exist"},
		{func(s *Spec) { s.ID, s.ProjectID = "new-one", new(uint32(99)) }, "hooks.provision[0] (new-one): project 99: not found"},
	} {
		bad := provisionSpecs(t, rc.URL)[:1]
		if err := f.m.dests.Resolve(&bad[0].Hook); err != nil {
			t.Fatal(err)
		}
		tc.mut(&bad[0])
		if err := f.m.Provision(context.Background(), bad, nil); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("want %q, got %v", tc.want, err)
		}
	}
	if _, err := f.m.Get("new-one"); err == nil {
		t.Error("a refused spec was stored")
	}
	if g, _ := f.m.Get("crm-revenue"); *g.ProjectID != 7 {
		t.Errorf("a refused spec changed the hook: %+v", g)
	}
	dup := provisionSpecs(t, rc.URL)
	dup[1].ID = dup[0].ID
	if err := f.m.Provision(context.Background(), dup, nil); err == nil || !strings.Contains(err.Error(), "declared twice") {
		t.Errorf("duplicate ids: %v", err)
	}
}
