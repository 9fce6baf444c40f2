package dialect

import (
	"bytes"
	"encoding/json"
	"errors"
	"net/http"
	"net/url"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/sluicehq/sluice/internal/event"
)

// FuzzWebhookDecode: whatever arrives, the decoder answers with one valid
// event or a 4xx *Error, and never panics.
func FuzzWebhookDecode(f *testing.F) {
	f.Add("POST", "/calltrack/call", "name=x", "application/json", []byte(`{"key1":"value1", "key2":"value2"}`))
	f.Add("GET", "/calltrack/call/99", "param=myparamvalue", "", []byte(nil))
	f.Add("POST", "/calltrack", "name=call&projectId=99", "application/x-www-form-urlencoded", []byte("a=1&a=2&b=%20"))
	f.Add("GET", "/redir/click/99", "to=https://a.shop.io/x", "", []byte(nil))
	f.Add("POST", "/crm/lead/7.gif", "token=abc123", "text/plain", []byte(`{"a":{"b":[1,"}",{"c":"\""}]}}`))
	f.Add("POST", "/crm", "", "application/json", []byte(`{"name":"lead","projectId":"99","uid":1234567890123}`))
	f.Add("POST", "/calltrack/call/0", "", "application/json", []byte(" \r\n"))
	f.Add("POST", "/calltrack", "uid=1234567890123&uid=2", "application/json", []byte(`{"name":["a","b"],"projectId":[0],"uid":["1234567890123"]}`))
	f.Add("POST", "/calltrack", "", "", []byte(`name=a&name=b&projectId=0&projectId=1`))
	projects := fixtureProjects(f)
	f.Fuzz(func(t *testing.T, method, path, rawQuery, contentType string, body []byte) {
		u := &url.URL{Path: path, RawQuery: rawQuery}
		hr, err := http.NewRequest(method, "http://gw"+u.EscapedPath(), nil)
		if err != nil {
			return // not a request net/http would hand us
		}
		hr.URL.Path = path
		hr.URL.RawQuery = rawQuery
		hr.Header.Set("Content-Type", contentType)
		gen, _ := event.NewGenerator(0, nil)
		w := &Webhook{Projects: projects, NewUID: gen.Next}
		res, derr := decode(w, &Request{HTTP: hr, Body: body, ClientIP: "127.0.0.1", ReceivedAt: time.Now()})
		if derr != nil {
			var de *Error
			if !errors.As(derr, &de) {
				t.Fatalf("error is not a dialect error: %v", derr)
			}
			if de.Status < 400 || de.Status > 499 || de.Message == "" {
				t.Fatalf("error %+v", de)
			}
			return
		}
		if len(res.Items) != 1 || res.Items[0].Event == nil {
			t.Fatalf("decoded %+v", res)
		}
		e := res.Items[0].Event
		if err := e.Validate(); err != nil {
			t.Fatalf("invalid event %+v: %v", e, err)
		}
		if !strings.HasPrefix(e.Key, "in.gen."+e.Service+".") || e.Key != "in.gen."+e.Service+"."+e.Name {
			t.Fatalf("key %q for service %q name %q", e.Key, e.Service, e.Name)
		}
		if !uidRE.MatchString(e.UID) {
			t.Fatalf("uid %q", e.UID)
		}
		var data map[string]any
		if err := json.Unmarshal(e.Data, &data); err != nil {
			t.Fatalf("data %s: %v", e.Data, err)
		}
		if !json.Valid(e.AppendJSON(nil)) {
			t.Fatal("event encodes to invalid JSON")
		}
	})
}

// FuzzParseJSONObject: the order-keeping parser agrees with encoding/json.
func FuzzParseJSONObject(f *testing.F) {
	for _, s := range []string{`{}`, `{"a":1}`, ` { "a" : [1, {"b":"}"}] , "c":"\"x\\" } `, `{"a":1,"a":2}`, `{"\u0061":1}`, `[1]`, `{"a":}`, `"s"`, `{"a":1e5,"b":-0.5,"c":null,"d":true}`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		o := &object{}
		err := parseJSONObject(b, o)
		var want map[string]any
		stdErr := json.Unmarshal(b, &want)
		if err != nil {
			if stdErr == nil && want != nil {
				t.Fatalf("%q: parser refused an object encoding/json accepts: %v", b, err)
			}
			return
		}
		if stdErr != nil {
			t.Fatalf("%q: parser accepted what encoding/json refuses: %v", b, stdErr)
		}
		out := o.appendJSON(nil)
		var got map[string]any
		if err := json.Unmarshal(out, &got); err != nil {
			t.Fatalf("%q re-encoded as invalid JSON %s: %v", b, out, err)
		}
		if !reflect.DeepEqual(got, want) {
			t.Fatalf("%q\n got %v\nwant %v", b, got, want)
		}
		var compact bytes.Buffer
		if err := json.Compact(&compact, out); err != nil || compact.Len() != len(out) {
			t.Fatalf("output not compact: %s", out)
		}
	})
}

func TestParseFormOrderAndArrays(t *testing.T) {
	o := &object{}
	if err := parseForm("b=2&a=1&b=3&c=%E2%9C%93&d=a+b", o); err != nil {
		t.Fatal(err)
	}
	if got := string(o.appendJSON(nil)); got != `{"b":["2","3"],"a":"1","c":"✓","d":"a b"}` {
		t.Fatalf("got %s", got)
	}
}
