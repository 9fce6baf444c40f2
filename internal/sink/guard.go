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
type Guard struct {
	Allow []netip.Prefix
}

// ErrBlocked is returned for a refused address.
var ErrBlocked = errors.New("address refused by the SSRF guard")

var denied = func() []netip.Prefix {
	var out []netip.Prefix
	for _, s := range []string{
		"0.0.0.0/8", "10.0.0.0/8", "100.64.0.0/10", "127.0.0.0/8", "169.254.0.0/16", "172.16.0.0/12",
		"192.0.0.0/24", "192.168.0.0/16", "198.18.0.0/15", "224.0.0.0/4", "240.0.0.0/4",
		"::/128", "::1/128", "fc00::/7", "fe80::/10", "ff00::/8", "64:ff9b::/96",
	} {
		out = append(out, netip.MustParsePrefix(s))
	}
	return out
}()

// Check reports whether ip may be dialled.
func (g *Guard) Check(ip netip.Addr) error {
	ip = ip.Unmap()
	for _, p := range g.Allow {
		if p.Contains(ip) {
			return nil
		}
	}
	for _, p := range denied {
		if p.Contains(ip) {
			return fmt.Errorf("%w: %s is in %s (allow it with hooks.allow_networks)", ErrBlocked, ip, p)
		}
	}
	return nil
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
