package hook

import (
	"context"
	"encoding/json"
	"testing"
)

// Seed 003's e-mail platform parameters are accepted: {{database_name}}
// is the project's name, the others render from the payload fields that
// carry them (seedFields), else empty.
func TestSeedParametersRenderFromTheEventOrEmpty(t *testing.T) {
	f := newFixture(t, true)
	rc := newReceiver(t, nil)
	hk := httpHook(rc.URL)
	hk.Active = false
	hk.CustomData = map[string]string{
		"db": "{{database_name}}", "campaign": "{{campaign_name}}", "subid": "{{campaign_subid}}", "segment": "{{segment_name}}",
		"message": "{{message_name}}", "subject": "{{message_subject}}", "resource": "{{resource_name}}",
		"line": "{{campaign_name}}/{{campaign_subid}} in {{database_name}}",
	}
	h, err := f.m.Create(context.Background(), hk, Start{})
	if err != nil {
		t.Fatalf("the seed's parameters are refused: %v", err)
	}
	for _, c := range []struct {
		name, data string
		want       map[string]string
	}{
		{"a call tracker's UTM fields", `{"utm_campaign":"brand","subid":"aff-7","segment":"vip","template_name":"welcome","subject":"Hi!","resource":"shop.example.com"}`,
			map[string]string{"campaign": "brand", "subid": "aff-7", "segment": "vip", "message": "welcome", "subject": "Hi!", "resource": "shop.example.com", "line": "brand/aff-7 in shop"}},
		{"the seed's own names first", `{"campaign_name":"Black Friday","utm_campaign":"brand","campaign_subid":"s1","subid":"s2","segment_name":"a","segment":"b","message_name":"m","message_subject":"S","resource_name":"r","resource":"x"}`,
			map[string]string{"campaign": "Black Friday", "subid": "s1", "segment": "a", "message": "m", "subject": "S", "resource": "r", "line": "Black Friday/s1 in shop"}},
		{"objects with a name", `{"campaign":{"name":"Spring","subid":42},"segment":{"name":"churned"},"message":{"name":"promo","subject":"Sale"},"resource":{"name":"app"}}`,
			map[string]string{"campaign": "Spring", "subid": "42", "segment": "churned", "message": "promo", "subject": "Sale", "resource": "app", "line": "Spring/42 in shop"}},
		{"a bare campaign string, numbers as written", `{"campaign":"autumn-sale","sub_id":1234567890123}`,
			map[string]string{"campaign": "autumn-sale", "subid": "1234567890123", "line": "autumn-sale/1234567890123 in shop"}},
		{"none of them", `{"amount":1}`, map[string]string{"line": "/ in shop"}},
		{"empty, null or objects without a name", `{"campaign_name":"","utm_campaign":null,"campaign":{"id":5},"segment":[],"subject":true}`,
			map[string]string{"line": "/ in shop"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			sample := `{"key":"in.gen.calltrack.call","channel":"http","service":"calltrack","name":"call","projectId":7,"td":{},"data":` + c.data +
				`,"id":"1","time":1,"dialect":"webhook","receivedAt":1}`
			res, err := f.m.Test(context.Background(), h.ID, json.RawMessage(sample))
			if err != nil || !res.Delivered {
				t.Fatalf("%+v %v", res, err)
			}
			var msgs []struct {
				CustomData map[string]string `json:"custom_data"`
			}
			if err := json.Unmarshal([]byte(res.Request.Body), &msgs); err != nil || len(msgs) != 1 {
				t.Fatalf("%v %s", err, res.Request.Body)
			}
			want := map[string]string{"db": "shop", "campaign": "", "subid": "", "segment": "", "message": "", "subject": "", "resource": ""}
			for k, v := range c.want {
				want[k] = v
			}
			for k, v := range want {
				if got := msgs[0].CustomData[k]; got != v {
					t.Errorf("%s = %q, want %q", k, got, v)
				}
			}
		})
	}
}
