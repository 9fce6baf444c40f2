package sink

import (
	"errors"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"
)

// The table of address forms the guard knows, each with a refused and an
// allowed case: the IPv6 forms that carry an IPv4 address are refused
// exactly when the address they carry is.
func TestGuardForms(t *testing.T) {
	for _, c := range []struct {
		form, ip string
		refused  bool
		why      string // part of the error when refused
	}{
		{"IPv4 loopback", "127.0.0.1", true, "127.0.0.0/8"},
		{"IPv4 private", "10.1.2.3", true, "10.0.0.0/8"},
		{"IPv4 private", "172.16.5.4", true, "172.16.0.0/12"},
		{"IPv4 private", "192.168.1.1", true, "192.168.0.0/16"},
		{"IPv4 metadata", "169.254.169.254", true, "169.254.0.0/16"},
		{"IPv4 shared", "100.64.0.1", true, "100.64.0.0/10"},
		{"IPv4 this network", "0.0.0.0", true, "0.0.0.0/8"},
		{"IPv4 multicast", "224.0.0.1", true, "224.0.0.0/4"},
		{"IPv4 broadcast", "255.255.255.255", true, "240.0.0.0/4"},
		{"IPv4 public", "93.184.216.34", false, ""},

		{"IPv6 loopback", "::1", true, "::1/128"},
		{"IPv6 unspecified", "::", true, "::/128"},
		{"IPv6 unique local", "fd00:ec2::254", true, "fc00::/7"},
		{"IPv6 link-local", "fe80::1", true, "fe80::/10"},
		{"IPv6 link-local with a zone", "fe80::1%eth0", true, "fe80::/10"},
		{"IPv6 site-local", "fec0::1", true, "fec0::/10"},
		{"IPv6 multicast", "ff02::1", true, "ff00::/8"},
		{"IPv6 discard", "100::1", true, "100::/64"},
		{"IPv6 public", "2606:2800:220:1:248:1893:25c8:1946", false, ""},

		{"IPv4-mapped loopback", "::ffff:127.0.0.1", true, "127.0.0.0/8"},
		{"IPv4-mapped metadata", "::ffff:169.254.169.254", true, "169.254.0.0/16"},
		{"IPv4-mapped public", "::ffff:93.184.216.34", false, ""},

		{"6to4 of loopback", "2002:7f00:1::", true, "6to4 address of 127.0.0.1"},
		{"6to4 of private", "2002:a01:203::1", true, "6to4 address of 10.1.2.3"},
		{"6to4 of metadata", "2002:a9fe:a9fe::", true, "6to4 address of 169.254.169.254"},
		{"6to4 of public", "2002:5db8:d822::1", false, ""},

		// Teredo: server 65.54.227.120 (public); client 127.0.0.1 is
		// stored inverted as 80ff:fffe.
		{"Teredo, loopback client", "2001:0:4136:e378:8000:63bf:80ff:fffe", true, "Teredo address of 127.0.0.1"},
		{"Teredo, private server", "2001:0:a00:1:8000:63bf:a247:2dde", true, "Teredo address of 10.0.0.1"},
		{"Teredo, public both", "2001:0:4136:e378:8000:63bf:a247:2dde", false, ""}, // client 93.184.210.33

		{"NAT64 of loopback", "64:ff9b::7f00:1", true, "NAT64 address of 127.0.0.1"},
		{"NAT64 of private", "64:ff9b::192.168.0.10", true, "NAT64 address of 192.168.0.10"},
		{"NAT64 of public", "64:ff9b::5db8:d822", false, ""},
		{"NAT64 local use", "64:ff9b:1::5db8:d822", true, "64:ff9b:1::/48"},

		{"IPv4-compatible loopback", "::127.0.0.1", true, "IPv4-compatible address of 127.0.0.1"},
		{"IPv4-compatible private", "::10.0.0.1", true, "IPv4-compatible address of 10.0.0.1"},
		{"IPv4-compatible public", "::93.184.216.34", false, ""},

		{"IPv4-translated loopback", "::ffff:0:127.0.0.1", true, "IPv4-translated address of 127.0.0.1"},
		{"IPv4-translated public", "::ffff:0:93.184.216.34", false, ""},

		{"ISATAP of private", "2001:db8::5efe:a00:1", true, "ISATAP address of 10.0.0.1"},
		{"ISATAP (global) of loopback", "2001:db8::200:5efe:7f00:1", true, "ISATAP address of 127.0.0.1"},
		{"ISATAP of public", "2001:db8::5efe:5db8:d822", false, ""},
	} {
		t.Run(c.form+" "+c.ip, func(t *testing.T) {
			err := (&Guard{}).Check(netip.MustParseAddr(c.ip))
			if !c.refused {
				if err != nil {
					t.Fatalf("refused: %v", err)
				}
				return
			}
			if !errors.Is(err, ErrBlocked) || !strings.Contains(err.Error(), c.why) {
				t.Fatalf("got %v, want a refusal naming %q", err, c.why)
			}
		})
	}
}

// What the operator names in hooks.allow_networks is allowed, as dialled.
func TestGuardAllowNamesTheDialledAddress(t *testing.T) {
	g := &Guard{Allow: []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8"), netip.MustParsePrefix("2002:a00::/24"), netip.MustParsePrefix("fd00:1::/32")}}
	for ip, ok := range map[string]bool{
		"127.0.0.1":        true,
		"::ffff:127.0.0.1": true,  // the same address
		"2002:7f00:1::":    false, // a 6to4 relay's way to 127.0.0.1: not named
		"2002:a01:203::1":  true,  // named
		"fd00:1::5":        true,
		"fd00:2::5":        false,
		"10.0.0.1":         false,
	} {
		err := g.Check(netip.MustParseAddr(ip))
		if ok != (err == nil) {
			t.Errorf("%s: %v", ip, err)
		}
	}
}

// The guard sits in the dialer: a refused address is never connected to.
func TestGuardDialerRefusesBeforeConnecting(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	accepted := make(chan struct{}, 1)
	go func() {
		if c, err := ln.Accept(); err == nil {
			accepted <- struct{}{}
			c.Close()
		}
	}()
	_, err = (&Guard{}).Dialer().Dial("tcp", ln.Addr().String())
	if !errors.Is(err, ErrBlocked) {
		t.Fatalf("dial: %v", err)
	}
	c, err := (&Guard{Allow: []netip.Prefix{netip.MustParsePrefix("127.0.0.1/32")}}).Dialer().Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	c.Close()
	select {
	case <-accepted:
	case <-time.After(5 * time.Second):
		t.Fatal("the allowed dial did not connect")
	}
}
