package dialect

import (
	"encoding/json"
	"net/http"
	"strconv"

	"github.com/sluicehq/sluice/internal/event"
)

// The answers the dialects share: one event, or a batch answered per item.

// IdempotencyHeader is the request header of the IETF httpapi draft.
const IdempotencyHeader = "Idempotency-Key"

const idempotencyReused = "was first used for a request with other content; nothing from this request was stored (use a new key for a new request)"

// itemReused is the refusal of one item of a batch: the others may have
// been stored or named as duplicates.
const itemReused = "was first used for other content at this position of the batch; this item was not stored (use a new key for a new request)"

// CodeIdempotencyKeyReused is the code of a request refused for reusing
// an Idempotency-Key.
const CodeIdempotencyKeyReused = "IDEMPOTENCY_KEY_REUSED"

// IdempotencyConflict is the refusal of a request whose Idempotency-Key
// was first used for another one.
func IdempotencyConflict() *Error {
	return &Error{Status: http.StatusUnprocessableEntity, Code: CodeIdempotencyKeyReused,
		Message: IdempotencyHeader + " " + idempotencyReused,
		Errors:  event.FieldErrors{{Path: IdempotencyHeader, Message: idempotencyReused}}}
}

// answerEvent answers one stored event: {"id":…,"key":…}, or
// {"id":…,"duplicate":true} naming the stored event.
func answerEvent(w http.ResponseWriter, ev *event.Event, out Outcome) {
	b := make([]byte, 0, 64+len(ev.Key))
	b = append(b, `{"id":`...)
	b = out.ID.AppendJSON(b)
	if out.Duplicate {
		b = append(b, `,"duplicate":true}`...)
	} else {
		b = append(b, `,"key":`...)
		b = event.AppendString(b, ev.Key)
		b = append(b, '}')
	}
	WriteRaw(w, http.StatusOK, append(b, '\n'))
}

// batchResult is the answer for one item of a batch.
type batchResult struct {
	Status string            `json:"status"` // accepted, duplicate or invalid
	ID     *event.ID         `json:"id,omitempty"`
	Key    string            `json:"key,omitempty"`
	Errors event.FieldErrors `json:"errors,omitempty"`
}

type batchAnswer struct {
	Code       string        `json:"code,omitempty"`
	Message    string        `json:"message,omitempty"`
	Accepted   int           `json:"accepted"`
	Duplicates int           `json:"duplicates"`
	Invalid    int           `json:"invalid"`
	Results    []batchResult `json:"results"`
}

// answerBatch answers a batch per item, in order: 200 when at least one
// item was accepted or was a duplicate; 422 when every valid item reused
// an Idempotency-Key for other content; 400 when none was valid. noun
// names an item ("hit", "event").
func answerBatch(w http.ResponseWriter, d *Decoded, out []Outcome, noun string) {
	ans := batchAnswer{Results: make([]batchResult, len(d.Items))}
	valid, conflicts := 0, 0
	for i, it := range d.Items {
		switch o := out[i]; {
		case it.Event == nil:
			ans.Results[i] = batchResult{Status: "invalid", Errors: it.Errors}
			ans.Invalid++
		case o.Conflict:
			ans.Results[i] = batchResult{Status: "invalid", Errors: event.FieldErrors{{Path: IdempotencyHeader, Message: itemReused}}}
			ans.Invalid++
			valid++
			conflicts++
		case o.Duplicate:
			id := o.ID
			ans.Results[i] = batchResult{Status: "duplicate", ID: &id}
			ans.Duplicates++
			valid++
		default:
			id := o.ID
			ans.Results[i] = batchResult{Status: "accepted", ID: &id, Key: it.Event.Key}
			ans.Accepted++
			valid++
		}
	}
	status := http.StatusOK
	switch {
	case valid > 0 && conflicts == valid:
		status = http.StatusUnprocessableEntity
		ans.Code, ans.Message = CodeIdempotencyKeyReused, IdempotencyHeader+" "+idempotencyReused
	case ans.Accepted+ans.Duplicates == 0:
		status = http.StatusBadRequest
		ans.Message = "no valid " + noun + " in the batch: " + strconv.Itoa(ans.Invalid) + " invalid"
	}
	WriteJSON(w, status, ans)
}

// JSON content type, shared by every answer.
var contentTypeJSON = []string{"application/json"}

// WriteJSON writes v as a JSON answer.
func WriteJSON(w http.ResponseWriter, status int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		status, b = http.StatusInternalServerError, []byte(`{"message":"internal error"}`)
	}
	WriteRaw(w, status, append(b, '\n'))
}

// WriteRaw writes b, a JSON document, as the answer.
func WriteRaw(w http.ResponseWriter, status int, b []byte) {
	h := w.Header()
	h["Content-Type"] = contentTypeJSON
	h["Content-Length"] = []string{strconv.Itoa(len(b))}
	w.WriteHeader(status)
	_, _ = w.Write(b)
}
