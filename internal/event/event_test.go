package event

import (
	"bytes"
	"encoding/json"
	"reflect"
	"testing"
)

func seedEvent() *Event {
	return &Event{
		Key: "in.gen.calltrack.call", Channel: ChannelHTTP, Service: "calltrack", Name: "call",
		ProjectID: 0, UID: "6462464730849083392",
		TD:   TD{IP: "109.252.93.158", UA: "curl/7.60.0"},
		Data: json.RawMessage(`{"param1":"value1","param2":"value26"}`),
		ID:   6462464730849083393, Time: 1540771658623,
		Dialect: "webhook", ReceivedAt: 1540771658623,
	}
}

func TestEncodeMatchesSeedMessage(t *testing.T) {
	got := string(seedEvent().AppendJSON(nil))
	want := `{"key":"in.gen.calltrack.call","channel":"http","service":"calltrack","name":"call","projectId":0,` +
		`"uid":"6462464730849083392","td":{"ip":"109.252.93.158","ua":"curl/7.60.0"},` +
		`"data":{"param1":"value1","param2":"value26"},"id":"6462464730849083393","time":1540771658623,` +
		`"dialect":"webhook","receivedAt":1540771658623}`
	if got != want {
		t.Fatalf("encoding\n got %s\nwant %s", got, want)
	}
}

func TestEncodeRoundTrip(t *testing.T) {
	e := seedEvent()
	e.TD.Ref = "https://example.com/a?b=\"c\""
	e.TD.Host = "gw.example.com"
	e.DedupKey = "hit:1"
	e.Identities = []Identity{{Type: "email_hash", Value: "f660"}, {Type: "user_id", Value: "u\x01<>&\u2028"}}
	e.Name = "weird \"name\"\n\t\\ \xff end"
	b := e.AppendJSON(nil)
	if !json.Valid(b) {
		t.Fatalf("invalid JSON: %s", b)
	}
	back, err := Decode(b)
	if err != nil {
		t.Fatal(err)
	}
	want := *e
	want.Name = "weird \"name\"\n\t\\ \ufffd end" // invalid UTF-8 becomes U+FFFD
	if !reflect.DeepEqual(*back, want) {
		t.Fatalf("round trip\n got %+v\nwant %+v", *back, want)
	}
	// The id splice gives the same bytes as a full encoding.
	enc := e.Encode(nil)
	if got := enc.WithID(nil, e.ID); !bytes.Equal(got, b) {
		t.Fatalf("WithID\n got %s\nwant %s", got, b)
	}
	// json.Marshal goes through MarshalJSON (and HTML-escapes its output).
	std, err := json.Marshal(e)
	if err != nil {
		t.Fatal(err)
	}
	if back2, err := Decode(std); err != nil || !reflect.DeepEqual(*back2, want) {
		t.Fatalf("json.Marshal round trip: %v\n got %+v", err, back2)
	}
}

func TestEncodeEmptyDataAndTD(t *testing.T) {
	e := &Event{Key: "k", Dialect: "webhook"}
	got := string(e.AppendJSON(nil))
	want := `{"key":"k","channel":"","service":"","name":"","projectId":0,"td":{},"data":{},"id":"0","time":0,"dialect":"webhook","receivedAt":0}`
	if got != want {
		t.Fatalf("got %s", got)
	}
}

func TestValidate(t *testing.T) {
	if err := seedEvent().Validate(); err != nil {
		t.Fatalf("seed event: %v", err)
	}
	cases := map[string]func(e *Event){
		"no key":      func(e *Event) { e.Key = "" },
		"no dialect":  func(e *Event) { e.Dialect = "" },
		"array data":  func(e *Event) { e.Data = json.RawMessage(`[1]`) },
		"broken data": func(e *Event) { e.Data = json.RawMessage(`{"a":}`) },
		"long dedup":  func(e *Event) { e.DedupKey = string(make([]byte, 600)) },
	}
	for name, mutate := range cases {
		t.Run(name, func(t *testing.T) {
			e := seedEvent()
			mutate(e)
			if err := e.Validate(); err == nil {
				t.Fatal("accepted")
			}
		})
	}
}

func FuzzAppendString(f *testing.F) {
	for _, s := range []string{"", "plain", "quote\"back\\slash", "\x00\x1f\x7f", "\xff\xfe", "\u2028\u2029", "привет", "<>&"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		b := appendString(nil, s)
		var back string
		if err := json.Unmarshal(b, &back); err != nil {
			t.Fatalf("%q encoded as invalid JSON %s: %v", s, b, err)
		}
		// encoding/json decodes to the same string after its own
		// invalid-UTF-8 replacement.
		std, _ := json.Marshal(s)
		var want string
		_ = json.Unmarshal(std, &want)
		if back != want {
			t.Fatalf("%q: decoded %q, encoding/json gives %q", s, back, want)
		}
	})
}
