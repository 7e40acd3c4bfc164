package gateway

import (
	"net/http/httptest"
	"net/netip"
	"testing"
)

func TestClientIPBelievesOnlyTrustedProxies(t *testing.T) {
	trusted := []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8"), netip.MustParsePrefix("::1/128")}
	cases := []struct {
		name, remote, xff, want string
	}{
		{"direct client, forged header ignored", "203.0.113.7:5000", "1.2.3.4", "203.0.113.7"},
		{"through a trusted proxy", "10.1.2.3:5000", "198.51.100.9", "198.51.100.9"},
		{"client-written entries left of the real one are ignored", "10.1.2.3:5000", "6.6.6.6, 198.51.100.9", "198.51.100.9"},
		{"two trusted hops", "10.1.2.3:5000", "198.51.100.9, 10.9.9.9", "198.51.100.9"},
		{"trusted proxy without header", "10.1.2.3:5000", "", "10.1.2.3"},
		{"malformed hop stops the walk", "10.1.2.3:5000", "198.51.100.9, garbage", "10.1.2.3"},
		{"IPv6 loopback proxy", "[::1]:5000", "2001:db8::1", "2001:db8::1"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r := httptest.NewRequest("GET", "/", nil)
			r.RemoteAddr = c.remote
			if c.xff != "" {
				r.Header.Set("X-Forwarded-For", c.xff)
			}
			if got := clientIP(r, trusted); got != c.want {
				t.Fatalf("got %s, want %s", got, c.want)
			}
		})
	}
}
