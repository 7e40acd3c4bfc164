package main

import (
	"context"
	"fmt"
	"maps"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/compose-spec/compose-go/v2/cli"
	"github.com/compose-spec/compose-go/v2/types"
	natsconf "github.com/nats-io/nats-server/v2/conf"
)

// No engine runs here, so docker-compose.yml is checked by loading it the
// way `docker compose` does and comparing what each service is told with
// what the services it talks to are given.

// composeEnvs are the environments the file is loaded with: its defaults,
// and every password overridden, so a URL that hard-codes the default
// instead of following the variable is caught.
var composeEnvs = map[string][]string{
	"defaults": {
		"USHER_SECRET_KEY=c2VjcmV0LWtleS1mb3ItY29tcG9zZS10ZXN0LTMyYnl0ZXM=",
		"USHER_EVENT_KEY=ZXZlbnQta2V5LWZvci1jb21wb3NlLXRlc3QtMzJieXRlcyE=",
	},
	"overridden": {
		"USHER_SECRET_KEY=c2VjcmV0LWtleS1mb3ItY29tcG9zZS10ZXN0LTMyYnl0ZXM=",
		"USHER_EVENT_KEY=ZXZlbnQta2V5LWZvci1jb21wb3NlLXRlc3QtMzJieXRlcyE=",
		"POSTGRES_PASSWORD=pgOverride1",
		"REDIS_PASSWORD=redisOverride2",
		"RABBITMQ_PASSWORD=rabbitOverride3",
		"PGADMIN_PASSWORD=adminOverride4",
		"NATS_GATEWAY_PASSWORD=gwOverride5",
		"NATS_NODE_PASSWORD=nodeOverride6",
		"NATS_BRIDGE_PASSWORD=bridgeOverride7",
	},
}

// repoRoot is where docker-compose.yml and nats.conf live.
func repoRoot(t *testing.T) string {
	t.Helper()
	root, err := filepath.Abs(filepath.Join("..", ".."))
	if err != nil {
		t.Fatal(err)
	}
	return root
}

// loadCompose loads docker-compose.yml with only env for interpolation: not
// the test's environment, not a developer's .env.
func loadCompose(t *testing.T, env []string) (*types.Project, error) {
	t.Helper()
	root := repoRoot(t)
	opts, err := cli.NewProjectOptions(
		[]string{filepath.Join(root, "docker-compose.yml")},
		cli.WithWorkingDirectory(root),
		cli.WithEnv(env),
	)
	if err != nil {
		return nil, err
	}
	return opts.LoadProject(context.Background())
}

func TestComposeRefusesToStartWithoutKeys(t *testing.T) {
	for _, key := range []string{"USHER_SECRET_KEY", "USHER_EVENT_KEY"} {
		var env []string
		for _, kv := range composeEnvs["defaults"] {
			if !strings.HasPrefix(kv, key+"=") {
				env = append(env, kv)
			}
		}
		_, err := loadCompose(t, env)
		if err == nil || !strings.Contains(err.Error(), key) {
			t.Errorf("without %s: got error %v, want one that names %s", key, err, key)
		}
	}
}

func TestCompose(t *testing.T) {
	for name, env := range composeEnvs {
		t.Run(name, func(t *testing.T) {
			p, err := loadCompose(t, env)
			if err != nil {
				t.Fatalf("docker-compose.yml does not load: %v", err)
			}
			c := composeCheck{t: t, p: p, env: env}
			c.services()
			c.settings()
			c.listeners()
			c.secrets()
			c.redis()
			c.replicas()
			c.urls()
			c.natsUsers()
			c.dependsOn()
		})
	}
}

type composeCheck struct {
	t   *testing.T
	p   *types.Project
	env []string
}

// usherServices are the services built from the Dockerfile.
func (c composeCheck) usherServices() []types.ServiceConfig {
	var out []types.ServiceConfig
	for _, name := range slices.Sorted(maps.Keys(c.p.Services)) {
		if s := c.p.Services[name]; s.Build != nil {
			out = append(out, s)
		}
	}
	return out
}

// role is the usher subcommand a service runs.
func role(s types.ServiceConfig) string {
	if len(s.Command) == 0 {
		return "serve" // the image's CMD
	}
	return s.Command[0]
}

func envOf(s types.ServiceConfig, name string) (string, bool) {
	v, ok := s.Environment[name]
	if !ok || v == nil {
		return "", false
	}
	return *v, true
}

func (c composeCheck) services() {
	t := c.t
	for _, name := range []string{"postgres", "redis", "rabbitmq", "nats", "mailpit", "pgadmin", "gateway", "node", "bridge", "mailer"} {
		if _, ok := c.p.Services[name]; !ok {
			t.Errorf("service %s is missing", name)
		}
	}
	for _, name := range []string{"gateway", "node", "bridge", "mailer"} {
		s, ok := c.p.Services[name]
		if !ok {
			continue
		}
		if s.Build == nil || s.Build.Context != repoRoot(t) {
			t.Errorf("service %s: want build: . (the repository's Dockerfile), got %+v", name, s.Build)
		}
		if s.Image != "usher:local" {
			t.Errorf("service %s: image %q, want usher:local", name, s.Image)
		}
		if role(s) != name {
			t.Errorf("service %s: runs usher %q, want usher %s", name, strings.Join(s.Command, " "), name)
		}
	}
	if s, ok := c.p.Services["mailer"]; ok {
		if got := strings.Join(s.Command, " "); got != "mailer --workers 2" {
			t.Errorf("service mailer: command %q, want %q", got, "mailer --workers 2")
		}
	}
	if s, ok := c.p.Services["gateway"]; ok {
		for _, port := range []uint32{8080, 9090} {
			if !slices.ContainsFunc(s.Ports, func(p types.ServicePortConfig) bool { return p.Target == port }) {
				t.Errorf("service gateway: container port %d is not published", port)
			}
		}
	}
}

// settings: docker-compose.yml sets nothing usher would not read.
func (c composeCheck) settings() {
	known := map[string]bool{}
	for _, s := range settings {
		known[s.name] = true
	}
	for _, name := range slices.Sorted(maps.Keys(c.p.Services)) {
		s := c.p.Services[name]
		for _, v := range slices.Sorted(maps.Keys(s.Environment)) {
			if strings.HasPrefix(v, "USHER_") && !known[v] {
				c.t.Errorf("service %s: %s is not a setting usher knows", name, v)
			}
		}
	}
}

// listeners: loopback inside a container is unreachable from outside it.
func (c composeCheck) listeners() {
	for _, s := range c.usherServices() {
		for name, want := range map[string]string{
			"USHER_HTTP_ADDR":  "0.0.0.0:8080",
			"USHER_ADMIN_ADDR": "0.0.0.0:9090",
			"USHER_PUBLIC_URL": "http://localhost:8080",
			"USHER_NAMESPACE":  "usher",
		} {
			if got, _ := envOf(s, name); got != want {
				c.t.Errorf("service %s: %s=%q, want %q", s.Name, name, got, want)
			}
		}
	}
}

// secrets: split processes refuse to start without the keys, so every usher
// service gets them, from the environment docker compose interpolates.
func (c composeCheck) secrets() {
	given := map[string]string{}
	for _, kv := range c.env {
		k, v, _ := strings.Cut(kv, "=")
		given[k] = v
	}
	for _, s := range c.usherServices() {
		for _, name := range []string{"USHER_SECRET_KEY", "USHER_EVENT_KEY"} {
			if got, _ := envOf(s, name); got != given[name] {
				c.t.Errorf("service %s: %s=%q, want the interpolated %q", s.Name, name, got, given[name])
			}
		}
	}
}

// flagValue returns the argument after flag in a command line.
func flagValue(cmd []string, flag string) (string, bool) {
	i := slices.Index(cmd, flag)
	if i < 0 || i+1 >= len(cmd) {
		return "", false
	}
	return cmd[i+1], true
}

func (c composeCheck) redis() {
	t := c.t
	s, ok := c.p.Services["redis"]
	if !ok {
		return
	}
	if v, _ := flagValue(s.Command, "--maxmemory-policy"); v != "noeviction" {
		t.Errorf("service redis: --maxmemory-policy %q, want noeviction (rate-limit counters must not be evicted); command %q", v, s.Command)
	}
	if v, _ := flagValue(s.Command, "--maxmemory"); v == "" || v == "0" {
		t.Errorf("service redis: no --maxmemory limit; command %q", s.Command)
	}
	if v, _ := flagValue(s.Command, "--requirepass"); v == "" {
		t.Errorf("service redis: no --requirepass; command %q", s.Command)
	}
}

func (c composeCheck) replicas() {
	s, ok := c.p.Services["node"]
	if !ok {
		return
	}
	if s.Deploy == nil || s.Deploy.Replicas == nil {
		c.t.Errorf("service node: no deploy.replicas, want 2")
	} else if n := *s.Deploy.Replicas; n != 2 {
		c.t.Errorf("service node: deploy.replicas: %d, want 2", n)
	}
}

// urls: each URL names a compose service and carries exactly the
// credentials that service is given.
func (c composeCheck) urls() {
	type want struct {
		scheme string
		port   string
		check  func(u *url.URL, server types.ServiceConfig) error
	}
	wants := map[string]want{
		"USHER_DATABASE_URL": {"postgres", "5432", func(u *url.URL, server types.ServiceConfig) error {
			user, _ := envOf(server, "POSTGRES_USER")
			pass, _ := envOf(server, "POSTGRES_PASSWORD")
			db, _ := envOf(server, "POSTGRES_DB")
			if user == "" || pass == "" || db == "" {
				return fmt.Errorf("service %s does not set POSTGRES_USER, POSTGRES_PASSWORD and POSTGRES_DB", server.Name)
			}
			return sameCredentials(u, user, pass, "/"+db)
		}},
		"USHER_REDIS_URL": {"redis", "6379", func(u *url.URL, server types.ServiceConfig) error {
			pass, ok := flagValue(server.Command, "--requirepass")
			if !ok {
				return fmt.Errorf("service %s runs without --requirepass", server.Name)
			}
			if u.User.Username() != "" && u.User.Username() != "default" {
				return fmt.Errorf("user %q, want none (Redis's default user)", u.User.Username())
			}
			if got, _ := u.User.Password(); got != pass {
				return fmt.Errorf("password %q, want the --requirepass of service %s, %q", got, server.Name, pass)
			}
			if u.Path != "/0" {
				return fmt.Errorf("database %q, want /0", u.Path)
			}
			return nil
		}},
		"USHER_AMQP_URL": {"amqp", "5672", func(u *url.URL, server types.ServiceConfig) error {
			user, _ := envOf(server, "RABBITMQ_DEFAULT_USER")
			pass, _ := envOf(server, "RABBITMQ_DEFAULT_PASS")
			if user == "" || pass == "" {
				return fmt.Errorf("service %s does not set RABBITMQ_DEFAULT_USER and RABBITMQ_DEFAULT_PASS", server.Name)
			}
			return sameCredentials(u, user, pass, "/")
		}},
		"USHER_NATS_URL": {"nats", "4222", func(u *url.URL, server types.ServiceConfig) error {
			if u.User != nil {
				return fmt.Errorf("credentials belong in USHER_NATS_USER and USHER_NATS_PASSWORD, one pair per role")
			}
			if !strings.HasPrefix(server.Image, "nats:") {
				return fmt.Errorf("service %s runs %q, not nats-server", server.Name, server.Image)
			}
			return nil
		}},
		"USHER_SMTP_URL": {"smtp", "1025", func(u *url.URL, server types.ServiceConfig) error {
			if u.User != nil {
				return fmt.Errorf("credentials %q, but service %s asks for none", u.User, server.Name)
			}
			return nil
		}},
	}
	for _, s := range c.usherServices() {
		for _, name := range slices.Sorted(maps.Keys(wants)) {
			w := wants[name]
			raw, ok := envOf(s, name)
			if !ok {
				c.t.Errorf("service %s: %s is not set (its default points at 127.0.0.1, which is the container itself)", s.Name, name)
				continue
			}
			u, err := url.Parse(raw)
			if err != nil {
				c.t.Errorf("service %s: %s=%q: %v", s.Name, name, raw, err)
				continue
			}
			if u.Scheme != w.scheme || u.Port() != w.port {
				c.t.Errorf("service %s: %s=%q, want scheme %s and port %s", s.Name, name, raw, w.scheme, w.port)
			}
			server, ok := c.p.Services[u.Hostname()]
			if !ok {
				c.t.Errorf("service %s: %s=%q names host %q, which is no service of docker-compose.yml", s.Name, name, raw, u.Hostname())
				continue
			}
			if err := w.check(u, server); err != nil {
				c.t.Errorf("service %s: %s=%q: %v", s.Name, name, raw, err)
			}
		}
	}
}

func sameCredentials(u *url.URL, user, pass, path string) error {
	gotPass, _ := u.User.Password()
	if u.User.Username() != user || gotPass != pass {
		return fmt.Errorf("credentials %s:%s, want %s:%s", u.User.Username(), gotPass, user, pass)
	}
	if u.Path != path {
		return fmt.Errorf("path %q, want %q", u.Path, path)
	}
	return nil
}

// natsConfMount returns where the nats service mounts ./nats.conf, read-only
// and named by its command line.
func natsConfMount(s types.ServiceConfig) (string, bool) {
	conf, ok := flagValue(s.Command, "-c")
	if !ok {
		conf, ok = flagValue(s.Command, "--config")
	}
	if !ok {
		return "", false
	}
	for _, v := range s.Volumes {
		if v.Type == types.VolumeTypeBind && filepath.Base(v.Source) == "nats.conf" && v.Target == conf && v.ReadOnly {
			return v.Source, true
		}
	}
	return "", false
}

// natsUsers: each role's USHER_NATS_USER and USHER_NATS_PASSWORD are a user
// of nats.conf, as nats-server reads it inside the nats service: with that
// service's environment behind its $VARIABLE references.
func (c composeCheck) natsUsers() {
	t := c.t
	server, ok := c.p.Services["nats"]
	if !ok {
		return
	}
	source, ok := natsConfMount(server)
	if !ok {
		t.Errorf("service nats: does not mount ./nats.conf read-only at the path given to -c; command %q, volumes %+v", server.Command, server.Volumes)
		return
	}
	if source != filepath.Join(repoRoot(t), "nats.conf") {
		t.Errorf("service nats: mounts %s, want the repository's nats.conf", source)
	}
	if !slices.ContainsFunc(server.Volumes, func(v types.ServiceVolumeConfig) bool {
		return v.Type == types.VolumeTypeVolume && v.Target == "/data"
	}) {
		t.Errorf("service nats: no named volume at /data, nats.conf's JetStream store_dir")
	}
	if server.HealthCheck == nil || !strings.Contains(strings.Join(server.HealthCheck.Test, " "), ":8222/healthz") {
		t.Errorf("service nats: healthcheck should ask the monitoring port's /healthz, got %+v", server.HealthCheck)
	}

	users := natsConfUsers(t, source, server)
	for _, s := range c.usherServices() {
		user, hasUser := envOf(s, "USHER_NATS_USER")
		pass, _ := envOf(s, "USHER_NATS_PASSWORD")
		switch role(s) {
		case "gateway", "node", "bridge":
			if user != role(s) {
				t.Errorf("service %s: USHER_NATS_USER=%q, want %q, the nats.conf user of its role", s.Name, user, role(s))
				continue
			}
		default:
			if !hasUser {
				continue
			}
		}
		want, ok := users[user]
		if !ok {
			t.Errorf("service %s: USHER_NATS_USER=%q is no user of nats.conf", s.Name, user)
			continue
		}
		if pass != want {
			t.Errorf("service %s: USHER_NATS_PASSWORD=%q, but nats.conf gives user %s the password %q in service nats", s.Name, pass, user, want)
		}
	}
}

// natsConfUsers parses nats.conf with nats-server's own parser and returns
// each user's password.
func natsConfUsers(t *testing.T, path string, server types.ServiceConfig) map[string]string {
	t.Helper()
	for name := range server.Environment {
		v, _ := envOf(server, name)
		t.Setenv(name, v)
	}
	text, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	m, err := natsconf.Parse(string(text))
	if err != nil {
		t.Fatalf("nats.conf with the environment of service nats: %v", err)
	}
	auth, _ := m["authorization"].(map[string]any)
	list, _ := auth["users"].([]any)
	users := map[string]string{}
	for _, u := range list {
		u, _ := u.(map[string]any)
		name, _ := u["user"].(string)
		pass, _ := u["password"].(string)
		if name == "" || pass == "" {
			t.Errorf("nats.conf: user %v has no user name or no password string", u)
			continue
		}
		users[name] = pass
	}
	if len(users) == 0 {
		t.Errorf("nats.conf: no authorization { users: [...] }")
	}
	return users
}

// dependsOn: every dependency is waited for as far as it can be: healthy
// where the dependency has a healthcheck, completed for one-shot jobs; and
// each role waits for the servers it cannot start without.
func (c composeCheck) dependsOn() {
	t := c.t
	for _, name := range slices.Sorted(maps.Keys(c.p.Services)) {
		s := c.p.Services[name]
		for _, dep := range slices.Sorted(maps.Keys(s.DependsOn)) {
			d := s.DependsOn[dep]
			target, ok := c.p.Services[dep]
			if !ok {
				t.Errorf("service %s: depends on %s, which is no service", name, dep)
				continue
			}
			healthy := target.HealthCheck != nil && !target.HealthCheck.Disable
			oneShot := target.Restart == types.RestartPolicyNo
			switch {
			case oneShot && d.Condition != types.ServiceConditionCompletedSuccessfully:
				t.Errorf("service %s: depends on one-shot %s with condition %q, want %s", name, dep, d.Condition, types.ServiceConditionCompletedSuccessfully)
			case !oneShot && healthy && d.Condition != types.ServiceConditionHealthy:
				t.Errorf("service %s: depends on %s with condition %q, want %s (it has a healthcheck)", name, dep, d.Condition, types.ServiceConditionHealthy)
			case !oneShot && !healthy && d.Condition == types.ServiceConditionHealthy:
				t.Errorf("service %s: waits for %s to be healthy, but it has no healthcheck", name, dep)
			}
		}
	}
	for name, deps := range map[string][]string{
		"gateway": {"postgres", "nats"},
		"node":    {"postgres", "redis", "nats"},
		"bridge":  {"nats", "rabbitmq"},
		"mailer":  {"postgres", "rabbitmq"},
	} {
		s, ok := c.p.Services[name]
		if !ok {
			continue
		}
		for _, dep := range deps {
			if _, ok := s.DependsOn[dep]; !ok {
				t.Errorf("service %s: must depend on %s (unreachable at start-up is fatal)", name, dep)
			}
		}
	}
	// ...and the servers say when they are ready.
	for _, name := range []string{"postgres", "redis", "rabbitmq", "nats"} {
		if s, ok := c.p.Services[name]; ok && (s.HealthCheck == nil || s.HealthCheck.Disable) {
			t.Errorf("service %s: no healthcheck, so nothing can wait for it to be ready", name)
		}
	}
}
