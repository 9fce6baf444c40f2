package profile

import (
	"slices"
	"strconv"

	"github.com/sluicehq/sluice/internal/event"
)

// The stored document of an observation (its ids, attributes and facts),
// encoded by hand: encoding/json's reflection was ~2 µs of a commerce
// purchase's fold, on the consumer's one serial path. It decodes with
// encoding/json into the same Observation (TestObservationDocument).

// document is o's stored document.
func (o *Observation) document() []byte {
	b := make([]byte, 0, 256)
	b = append(b, `{"ids":[`...)
	for i, id := range o.IDs {
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, `{"type":`...)
		b = event.AppendString(b, id.Type)
		b = append(b, `,"value":`...)
		b = event.AppendString(b, id.Value)
		b = append(b, '}')
	}
	b = append(b, ']')
	if len(o.Attrs) > 0 {
		names := make([]string, 0, len(o.Attrs))
		for n := range o.Attrs {
			names = append(names, n)
		}
		slices.Sort(names)
		b = append(b, `,"attrs":{`...)
		for i, n := range names {
			if i > 0 {
				b = append(b, ',')
			}
			b = event.AppendString(b, n)
			b = append(b, ':')
			b = event.AppendString(b, o.Attrs[n])
		}
		b = append(b, '}')
	}
	f := &o.Facts
	if f.Revenue != nil || f.Purchase != nil || f.Cart != nil || f.Wishlist != nil {
		b = append(b, `,"facts":{`...)
		sep := func() {
			if b[len(b)-1] != '{' {
				b = append(b, ',')
			}
		}
		if r := f.Revenue; r != nil {
			b = append(b, `"revenue":{"currency":`...)
			b = event.AppendString(b, r.Currency)
			b = append(b, `,"amount":`...)
			b = event.AppendString(b, r.Amount)
			b = append(b, '}')
		}
		if p := f.Purchase; p != nil {
			sep()
			b = append(b, `"purchase":{`...)
			for _, kv := range [][2]string{{"orderId", p.OrderID}, {"value", p.Value}, {"currency", p.Currency}} {
				if kv[1] != "" {
					sep()
					b = append(b, '"')
					b = append(b, kv[0]...)
					b = append(b, `":`...)
					b = event.AppendString(b, kv[1])
				}
			}
			if len(p.Items) > 0 {
				sep()
				b = append(b, `"items":`...)
				b = appendItems(b, p.Items)
			}
			b = append(b, '}')
		}
		if c := f.Cart; c != nil {
			sep()
			b = append(b, `"cart":{"op":`...)
			b = event.AppendString(b, c.Op)
			if len(c.Items) > 0 {
				b = append(b, `,"items":`...)
				b = appendItems(b, c.Items)
			}
			b = append(b, '}')
		}
		if len(f.Wishlist) > 0 {
			sep()
			b = append(b, `"wishlist":[`...)
			for i, w := range f.Wishlist {
				if i > 0 {
					b = append(b, ',')
				}
				b = event.AppendString(b, w)
			}
			b = append(b, ']')
		}
		b = append(b, '}')
	}
	return append(b, '}')
}

func appendItems(b []byte, items []CartItem) []byte {
	b = append(b, '[')
	for i, it := range items {
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, `{"productId":`...)
		b = event.AppendString(b, it.ProductID)
		b = append(b, `,"quantity":`...)
		b = strconv.AppendInt(b, it.Quantity, 10)
		if it.Price != "" {
			b = append(b, `,"price":`...)
			b = event.AppendString(b, it.Price)
		}
		b = append(b, '}')
	}
	return append(b, ']')
}
