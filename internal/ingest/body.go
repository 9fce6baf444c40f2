package ingest

import (
	"bufio"
	"bytes"
	"compress/flate"
	"compress/gzip"
	"compress/zlib"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync"

	"github.com/sluicehq/sluice/internal/dialect"
	"github.com/sluicehq/sluice/internal/event"
)

var bufferPool = sync.Pool{New: func() any { return new(bytes.Buffer) }}

func putBuffer(b *bytes.Buffer) {
	if b.Cap() <= 1<<20 {
		b.Reset()
		bufferPool.Put(b)
	}
}

// readBody reads the body of a POST within limit, decoding its
// Content-Encoding (gzip, deflate): the limit applies to the decoded body
// as well as to the bytes on the wire, so a compression bomb stops at it.
func (s *Server) readBody(w http.ResponseWriter, r *http.Request, limit int64) (*bytes.Buffer, error) {
	buf := bufferPool.Get().(*bytes.Buffer)
	if r.Method != http.MethodPost {
		return buf, nil
	}
	codings, err := contentCodings(r.Header)
	if err != nil {
		putBuffer(buf)
		return nil, err
	}
	if r.ContentLength > limit {
		putBuffer(buf)
		return nil, tooLarge(limit)
	}
	var body io.Reader = http.MaxBytesReader(w, r.Body, limit)
	var release []func()
	defer func() {
		for _, f := range release {
			f()
		}
	}()
	// Codings are listed in the order they were applied: undo the last first.
	for i := len(codings) - 1; i >= 0; i-- {
		dec, done, err := decoder(codings[i], body)
		if err != nil {
			putBuffer(buf)
			return nil, err
		}
		body, release = dec, append(release, done)
	}
	if len(codings) > 0 {
		body = io.LimitReader(body, limit+1)
	}
	n, err := buf.ReadFrom(body)
	if err != nil {
		putBuffer(buf)
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return nil, tooLarge(limit)
		}
		if len(codings) > 0 {
			return nil, dialect.FieldError(http.StatusBadRequest, "body", "cannot be decoded as "+strings.Join(codings, ", ")+": "+err.Error())
		}
		return nil, dialect.Errorf(http.StatusBadRequest, "reading the body: %v", err)
	}
	if n > limit {
		putBuffer(buf)
		return nil, dialect.Errorf(http.StatusRequestEntityTooLarge, "body is larger than the limit of %d bytes once decoded (%s)", limit, strings.Join(codings, ", "))
	}
	return buf, nil
}

// contentCodings returns the request's content codings, in the order
// applied, without identity; a coding sluice cannot decode is a 415.
func contentCodings(h http.Header) ([]string, error) {
	vals := h.Values("Content-Encoding")
	if len(vals) == 0 {
		return nil, nil
	}
	var out []string
	for _, v := range vals {
		for _, c := range strings.Split(v, ",") {
			c = strings.ToLower(strings.TrimSpace(c))
			switch c {
			case "", "identity":
			case "gzip", "x-gzip", "deflate":
				out = append(out, c)
			default:
				return nil, &dialect.Error{Status: http.StatusUnsupportedMediaType,
					Message: "Content-Encoding " + strconv.Quote(c) + " is not supported; send the body uncompressed or with gzip or deflate",
					Errors:  event.FieldErrors{{Path: "Content-Encoding", Message: "must be gzip, deflate or identity"}},
					Header:  map[string]string{"Accept-Encoding": "gzip, deflate"}}
			}
		}
	}
	if len(out) > 2 {
		return nil, dialect.FieldError(http.StatusUnsupportedMediaType, "Content-Encoding", "at most two codings are decoded")
	}
	return out, nil
}

var gzipPool sync.Pool

// decoder wraps r in a reader of the coding; done returns its state to a
// pool. deflate is the zlib format (RFC 9110), or a raw deflate stream,
// which some senders send under that name.
func decoder(coding string, r io.Reader) (io.Reader, func(), error) {
	bad := func(err error) error {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return err
		}
		return dialect.FieldError(http.StatusBadRequest, "body", "cannot be decoded as "+coding+": "+err.Error())
	}
	switch coding {
	case "gzip", "x-gzip":
		zr, _ := gzipPool.Get().(*gzip.Reader)
		var err error
		if zr == nil {
			zr, err = gzip.NewReader(r)
		} else {
			err = zr.Reset(r)
		}
		if err != nil {
			return nil, nil, bad(err)
		}
		zr.Multistream(true)
		return zr, func() { gzipPool.Put(zr) }, nil
	default: // deflate
		br := bufio.NewReaderSize(r, 512)
		head, err := br.Peek(2)
		if err != nil && len(head) < 2 {
			return nil, nil, bad(fmt.Errorf("stream too short: %w", err))
		}
		if head[0]&0x0f == 8 && (uint16(head[0])<<8|uint16(head[1]))%31 == 0 {
			zr, err := zlib.NewReader(br)
			if err != nil {
				return nil, nil, bad(err)
			}
			return zr, func() { zr.Close() }, nil
		}
		fr := flate.NewReader(br)
		return fr, func() { fr.Close() }, nil
	}
}

func tooLarge(limit int64) *dialect.Error {
	return dialect.Errorf(http.StatusRequestEntityTooLarge, "body is larger than the limit of %d bytes", limit)
}
