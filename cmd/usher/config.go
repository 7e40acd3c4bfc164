package main

import (
	"fmt"
	"net/netip"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"time"
)

// setting is one USHER_* variable: its name, its default and what it means.
// The README's configuration table is this list.
type setting struct {
	name, def, doc string
}

// settings lists every variable usher reads. A variable missing here is not
// read; the compose test checks docker-compose.yml sets nothing else.
var settings = []setting{
	{"USHER_HTTP_ADDR", "127.0.0.1:8080", "public REST listener"},
	{"USHER_ADMIN_ADDR", "127.0.0.1:9090", "/metrics, and pprof when USHER_PPROF=true"},
	{"USHER_PPROF", "false", "serve net/http/pprof on the admin address"},
	{"USHER_DATABASE_URL", "postgres://postgres@127.0.0.1:5432/usher?sslmode=disable", "PostgreSQL"},
	{"USHER_REDIS_URL", "redis://127.0.0.1:6379/0", "Redis"},
	{"USHER_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/", "RabbitMQ"},
	{"USHER_NATS_URL", "", "empty in serve: embedded in-process server; split processes default to nats://127.0.0.1:4222"},
	{"USHER_NATS_USER", "", "NATS user (with USHER_NATS_PASSWORD)"},
	{"USHER_NATS_PASSWORD", "", "NATS password"},
	{"USHER_NATS_TOKEN", "", "NATS token"},
	{"USHER_NATS_NKEY_SEED_FILE", "", "file holding an NKey seed"},
	{"USHER_NATS_CA_FILE", "", "CA bundle that enables TLS to NATS"},
	{"USHER_SMTP_URL", "smtp://127.0.0.1:1025", "SMTP server (smtps:// for implicit TLS, ?starttls=required)"},
	{"USHER_MAIL_FROM", "usher <no-reply@localhost>", "sender of every email"},
	{"USHER_PUBLIC_URL", "http://127.0.0.1:8080", "public base URL, also the JWT iss"},
	{"USHER_VERIFY_URL", "", "verification link template ({token}); default: <public>/v1/auth/verify-email?token={token}"},
	{"USHER_RESET_URL", "", "reset link template ({token}); default: <public>/v1/auth/password-reset?token={token}"},
	{"USHER_AUTO_MIGRATE", "true", "serve migrates the database on start"},
	{"USHER_SECRET_KEY", "", "32+ byte secret (base64 or hex) for signing keys and refresh MACs; serve generates a dev one when empty"},
	{"USHER_EVENT_KEY", "", "32 byte key (base64) that seals email events; serve generates a dev one when empty"},
	{"USHER_DATA_DIR", ".usher-data", "serve's local files: generated development keys and the embedded NATS store"},
	{"USHER_JWT_KEY_FILE", "", "PEM Ed25519 private key that pins the signing key"},
	{"USHER_JWT_AUDIENCE", "usher", "JWT aud"},
	{"USHER_ACCESS_TTL", "15m", "access token lifetime"},
	{"USHER_VERIFY_TTL", "24h", "lifetime of an email verification token"},
	{"USHER_RESET_TTL", "30m", "lifetime of a password reset token"},
	{"USHER_SMTP_TIMEOUT", "10s", "timeout of one SMTP delivery; the mailer's claim on an email outlasts it"},
	{"USHER_SESSION_LIFETIME", "720h", "absolute session lifetime from login; refreshing never extends it"},
	{"USHER_SESSION_IDLE", "168h", "a session ends after this long without a refresh"},
	{"USHER_NAMESPACE", "usher", "prefix of every NATS subject, stream, exchange, queue and Redis key ([a-z0-9_]+)"},
	{"USHER_NODE_ID", "", "name of this node in pings; default host-pid"},
	{"USHER_REQUEST_TIMEOUT", "5s", "budget of one request from gateway to node"},
	{"USHER_MAX_INFLIGHT", "1024", "requests in flight per concern on one node before it answers overloaded"},
	{"USHER_RATE_LIMITS", "on", "off disables every rate limit"},
	{"USHER_TRUSTED_PROXIES", "", "comma-separated CIDRs whose X-Forwarded-For is believed"},
	{"USHER_CORS_ORIGINS", "", "comma-separated allowed origins"},
	{"USHER_ARGON2_MEMORY_KIB", "19456", "argon2id memory"},
	{"USHER_ARGON2_TIME", "2", "argon2id iterations"},
	{"USHER_REFRESH_GRACE", "10s", "window in which a refresh token's predecessor returns the same successor"},
	{"USHER_CACHE", "on", "off reads every user view and list page from PostgreSQL"},
	{"USHER_CACHE_USER_TTL", "5m", "how long a user's view stays in Redis (plus up to 10% jitter)"},
	{"USHER_CACHE_LIST_TTL", "30s", "how long an admin list page stays in Redis (plus up to 10% jitter)"},
	{"USHER_PRUNE_INTERVAL", "10m", "how often a node prunes expired sessions, tokens, revocations and published events"},
	{"USHER_RETENTION", "168h", "how long ended sessions, used tokens, published outbox rows and sent-email records are kept"},
	{"USHER_LOG_LEVEL", "info", "debug, info, warn or error"},
}

var namespacePattern = regexp.MustCompile(`^[a-z0-9_]+$`)

// config is the parsed environment, shared by every subcommand.
type config struct {
	HTTPAddr, AdminAddr string
	Pprof               bool
	DatabaseURL         string
	RedisURL            string
	AMQPURL             string
	NATSURL             string
	NATSUser, NATSPass  string
	NATSToken           string
	NATSNKeyFile        string
	NATSCAFile          string
	SMTPURL, MailFrom   string
	PublicURL           string
	VerifyURL, ResetURL string
	AutoMigrate         bool
	SecretKey, EventKey string
	DataDir             string
	JWTKeyFile          string
	JWTAudience         string
	AccessTTL           time.Duration
	VerifyTTL           time.Duration
	ResetTTL            time.Duration
	SMTPTimeout         time.Duration
	SessionLifetime     time.Duration
	SessionIdle         time.Duration
	Namespace           string
	NodeID              string
	RequestTimeout      time.Duration
	MaxInflight         int
	RateLimits          bool
	TrustedProxies      []netip.Prefix
	CORSOrigins         []string
	Argon2MemoryKiB     uint32
	Argon2Time          uint32
	RefreshGrace        time.Duration
	Cache               bool
	CacheUserTTL        time.Duration
	CacheListTTL        time.Duration
	PruneInterval       time.Duration
	Retention           time.Duration
	LogLevel            string
}

// loadConfig reads every setting through getenv, applying defaults, and
// reports every bad value at once.
func loadConfig(getenv func(string) string) (config, error) {
	get := func(name string) string {
		if v := getenv(name); v != "" {
			return v
		}
		for _, s := range settings {
			if s.name == name {
				return s.def
			}
		}
		panic("config: unknown setting " + name) // a typo in this file
	}
	var problems []string
	bad := func(name, why string) { problems = append(problems, name+": "+why) }
	boolean := func(name string) bool {
		switch strings.ToLower(get(name)) {
		case "true", "on", "1", "yes":
			return true
		case "false", "off", "0", "no":
			return false
		}
		bad(name, "want true/false or on/off")
		return false
	}
	duration := func(name string) time.Duration {
		d, err := time.ParseDuration(get(name))
		if err != nil || d <= 0 {
			bad(name, "want a positive duration such as 5s")
		}
		return d
	}
	number := func(name string, min, max int) int {
		n, err := strconv.Atoi(get(name))
		if err != nil || n < min || n > max {
			bad(name, fmt.Sprintf("want an integer from %d to %d", min, max))
		}
		return n
	}
	list := func(name string) []string {
		var out []string
		for _, v := range strings.Split(get(name), ",") {
			if v = strings.TrimSpace(v); v != "" {
				out = append(out, v)
			}
		}
		return out
	}

	c := config{
		HTTPAddr:        get("USHER_HTTP_ADDR"),
		AdminAddr:       get("USHER_ADMIN_ADDR"),
		Pprof:           boolean("USHER_PPROF"),
		DatabaseURL:     get("USHER_DATABASE_URL"),
		RedisURL:        get("USHER_REDIS_URL"),
		AMQPURL:         get("USHER_AMQP_URL"),
		NATSURL:         get("USHER_NATS_URL"),
		NATSUser:        get("USHER_NATS_USER"),
		NATSPass:        get("USHER_NATS_PASSWORD"),
		NATSToken:       get("USHER_NATS_TOKEN"),
		NATSNKeyFile:    get("USHER_NATS_NKEY_SEED_FILE"),
		NATSCAFile:      get("USHER_NATS_CA_FILE"),
		SMTPURL:         get("USHER_SMTP_URL"),
		MailFrom:        get("USHER_MAIL_FROM"),
		PublicURL:       strings.TrimRight(get("USHER_PUBLIC_URL"), "/"),
		VerifyURL:       get("USHER_VERIFY_URL"),
		ResetURL:        get("USHER_RESET_URL"),
		AutoMigrate:     boolean("USHER_AUTO_MIGRATE"),
		SecretKey:       get("USHER_SECRET_KEY"),
		EventKey:        get("USHER_EVENT_KEY"),
		DataDir:         get("USHER_DATA_DIR"),
		JWTKeyFile:      get("USHER_JWT_KEY_FILE"),
		JWTAudience:     get("USHER_JWT_AUDIENCE"),
		AccessTTL:       duration("USHER_ACCESS_TTL"),
		VerifyTTL:       duration("USHER_VERIFY_TTL"),
		ResetTTL:        duration("USHER_RESET_TTL"),
		SMTPTimeout:     duration("USHER_SMTP_TIMEOUT"),
		SessionLifetime: duration("USHER_SESSION_LIFETIME"),
		SessionIdle:     duration("USHER_SESSION_IDLE"),
		Namespace:       get("USHER_NAMESPACE"),
		NodeID:          get("USHER_NODE_ID"),
		RequestTimeout:  duration("USHER_REQUEST_TIMEOUT"),
		MaxInflight:     number("USHER_MAX_INFLIGHT", 1, 1<<20),
		RateLimits:      boolean("USHER_RATE_LIMITS"),
		CORSOrigins:     list("USHER_CORS_ORIGINS"),
		Argon2MemoryKiB: uint32(number("USHER_ARGON2_MEMORY_KIB", 8, 4<<20)),
		Argon2Time:      uint32(number("USHER_ARGON2_TIME", 1, 100)),
		RefreshGrace:    duration("USHER_REFRESH_GRACE"),
		Cache:           boolean("USHER_CACHE"),
		CacheUserTTL:    duration("USHER_CACHE_USER_TTL"),
		CacheListTTL:    duration("USHER_CACHE_LIST_TTL"),
		PruneInterval:   duration("USHER_PRUNE_INTERVAL"),
		Retention:       duration("USHER_RETENTION"),
		LogLevel:        get("USHER_LOG_LEVEL"),
	}
	for _, v := range list("USHER_TRUSTED_PROXIES") {
		p, err := netip.ParsePrefix(v)
		if err != nil {
			addr, aerr := netip.ParseAddr(v)
			if aerr != nil {
				bad("USHER_TRUSTED_PROXIES", fmt.Sprintf("%q is not a CIDR or an IP address", v))
				continue
			}
			p = netip.PrefixFrom(addr, addr.BitLen())
		}
		c.TrustedProxies = append(c.TrustedProxies, p.Masked())
	}
	if !namespacePattern.MatchString(c.Namespace) {
		bad("USHER_NAMESPACE", "want [a-z0-9_]+")
	}
	for _, u := range []struct{ name, value string }{
		{"USHER_PUBLIC_URL", c.PublicURL},
	} {
		if p, err := url.Parse(u.value); err != nil || p.Scheme == "" || p.Host == "" {
			bad(u.name, "want an absolute URL")
		}
	}
	if c.VerifyURL == "" {
		c.VerifyURL = c.PublicURL + "/v1/auth/verify-email?token={token}"
	}
	if c.ResetURL == "" {
		c.ResetURL = c.PublicURL + "/v1/auth/password-reset?token={token}"
	}
	if len(problems) > 0 {
		return c, fmt.Errorf("configuration: %s", strings.Join(problems, "; "))
	}
	return c, nil
}
