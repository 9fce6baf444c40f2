package sink

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"syscall"
)

// Guard refuses connections to addresses a hook must not reach (SSRF):
// loopback, private, link-local (cloud metadata included), shared,
// unspecified and multicast addresses, unless Allow lists them. It checks
// the address being dialled, after DNS, so a name that resolves (or later
// re-resolves) to a refused address is refused too.
//
// An IPv6 address that carries an IPv4 address for a translator or a
// tunnel to reach (6to4, Teredo, NAT64, IPv4-compatible, IPv4-translated,
// ISATAP; see embeddings) is refused when the IPv4 address it carries is:
// 2002:7f00:1:: is 127.0.0.1 behind a 6to4 relay. IPv4-mapped addresses
// (::ffff:a.b.c.d) are the IPv4 address itself and are checked as such.
//
// Allow applies to the address as dialled: 127.0.0.0/8 allows 127.0.0.1
// and ::ffff:127.0.0.1, not 2002:7f00:1:: (name 2002::/16 for that).
type Guard struct {
	Allow []netip.Prefix
}

// ErrBlocked is returned for a refused address.
var ErrBlocked = errors.New("address refused by the SSRF guard")

func prefixes(ss ...string) []netip.Prefix {
	out := make([]netip.Prefix, len(ss))
	for i, s := range ss {
		out[i] = netip.MustParsePrefix(s)
	}
	return out
}

// deniedV4 are the IPv4 networks a hook may not reach, directly or
// embedded in an IPv6 address.
var deniedV4 = prefixes(
	"0.0.0.0/8",      // "this network", unspecified
	"10.0.0.0/8",     // private
	"100.64.0.0/10",  // shared (carrier-grade NAT)
	"127.0.0.0/8",    // loopback
	"169.254.0.0/16", // link-local, cloud metadata
	"172.16.0.0/12",  // private
	"192.0.0.0/24",   // IETF protocol assignments
	"192.168.0.0/16", // private
	"198.18.0.0/15",  // benchmarking
	"224.0.0.0/4",    // multicast
	"240.0.0.0/4",    // reserved, broadcast
)

// deniedV6 are the IPv6 networks a hook may not reach, whatever they
// carry.
var deniedV6 = prefixes(
	"::/128",         // unspecified
	"::1/128",        // loopback
	"100::/64",       // discard-only
	"64:ff9b:1::/48", // NAT64 for local use (RFC 8215): a site's own translator, where the IPv4 part sits is the site's choice
	"fc00::/7",       // unique local
	"fe80::/10",      // link-local
	"fec0::/10",      // site-local (deprecated)
	"ff00::/8",       // multicast
)

// An embedding is an IPv6 form that carries an IPv4 address.
type embedding struct {
	name   string
	match  func(b [16]byte) bool
	inside func(b [16]byte) []netip.Addr
}

func v4At(b [16]byte, i int) netip.Addr {
	return netip.AddrFrom4([4]byte{b[i], b[i+1], b[i+2], b[i+3]})
}

func inPrefix(p netip.Prefix) func([16]byte) bool {
	return func(b [16]byte) bool { return p.Contains(netip.AddrFrom16(b)) }
}

// embeddings are the IPv6 forms that carry an IPv4 address, with where
// the address sits.
var embeddings = []embedding{
	// RFC 3056: 2002:AABB:CCDD::/48 is the 6to4 site of A.B.C.D.
	{"6to4", inPrefix(netip.MustParsePrefix("2002::/16")), func(b [16]byte) []netip.Addr { return []netip.Addr{v4At(b, 2)} }},
	// RFC 4380: 2001:0:SSSS:SSSS:flags:port:CCCC:CCCC, the server in
	// clear, the client's address with every bit inverted.
	{"Teredo", inPrefix(netip.MustParsePrefix("2001::/32")), func(b [16]byte) []netip.Addr {
		c := v4At(b, 12).As4()
		for i := range c {
			c[i] ^= 0xff
		}
		return []netip.Addr{v4At(b, 4), netip.AddrFrom4(c)}
	}},
	// RFC 6052: the well-known NAT64 prefix, the IPv4 address last.
	{"NAT64", inPrefix(netip.MustParsePrefix("64:ff9b::/96")), func(b [16]byte) []netip.Addr { return []netip.Addr{v4At(b, 12)} }},
	// RFC 4291 2.5.5.1: IPv4-compatible, ::A.B.C.D (deprecated).
	{"IPv4-compatible", inPrefix(netip.MustParsePrefix("::/96")), func(b [16]byte) []netip.Addr { return []netip.Addr{v4At(b, 12)} }},
	// RFC 2765: IPv4-translated, ::ffff:0:A.B.C.D (SIIT).
	{"IPv4-translated", inPrefix(netip.MustParsePrefix("::ffff:0:0:0/96")), func(b [16]byte) []netip.Addr { return []netip.Addr{v4At(b, 12)} }},
	// RFC 5214: an ISATAP interface id, ::0:5efe:A.B.C.D or
	// ::200:5efe:A.B.C.D under any /64.
	{"ISATAP", func(b [16]byte) bool {
		return (b[8]|0x02) == 0x02 && b[9] == 0 && b[10] == 0x5e && b[11] == 0xfe
	}, func(b [16]byte) []netip.Addr { return []netip.Addr{v4At(b, 12)} }},
}

// Check reports whether ip may be dialled.
func (g *Guard) Check(ip netip.Addr) error {
	ip = ip.Unmap().WithZone("") // a prefix never contains an address with a zone
	for _, p := range g.Allow {
		if p.Contains(ip) {
			return nil
		}
	}
	if ip.Is4() {
		if p, ok := deniedIn(deniedV4, ip); ok {
			return fmt.Errorf("%w: %s is in %s (allow it with hooks.allow_networks)", ErrBlocked, ip, p)
		}
		return nil
	}
	if p, ok := deniedIn(deniedV6, ip); ok {
		return fmt.Errorf("%w: %s is in %s (allow it with hooks.allow_networks)", ErrBlocked, ip, p)
	}
	b := ip.As16()
	for _, e := range embeddings {
		if !e.match(b) {
			continue
		}
		for _, v4 := range e.inside(b) {
			if p, ok := deniedIn(deniedV4, v4); ok {
				return fmt.Errorf("%w: %s is a %s address of %s, which is in %s (allow it with hooks.allow_networks)", ErrBlocked, ip, e.name, v4, p)
			}
		}
	}
	return nil
}

func deniedIn(ps []netip.Prefix, ip netip.Addr) (netip.Prefix, bool) {
	for _, p := range ps {
		if p.Contains(ip) {
			return p, true
		}
	}
	return netip.Prefix{}, false
}

// Control is a net.Dialer Control function that applies the guard.
func (g *Guard) Control(network, address string, _ syscall.RawConn) error {
	host, _, err := net.SplitHostPort(address)
	if err != nil {
		return err
	}
	ip, err := netip.ParseAddr(host)
	if err != nil {
		return fmt.Errorf("%w: %q is not an address", ErrBlocked, host)
	}
	return g.Check(ip)
}

// Dialer returns a dialer that applies the guard (nil: no guard).
func (g *Guard) Dialer() *net.Dialer {
	d := &net.Dialer{}
	if g != nil {
		d.Control = g.Control
	}
	return d
}
