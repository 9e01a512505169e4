package httpapi

import (
	"net/http"
	"strings"
	"testing"

	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/slideshowd/slideshowd/scheduler"
)

func TestAuth(t *testing.T) {
	endpoints := []struct{ method, path, body string }{
		{"POST", "/v1/slideshows", validBody},
		{"GET", "/v1/slideshows/job1", ""},
		{"GET", "/v1/slideshows/job1/images/1", ""},
		{"POST", "/v1/slideshows/job1/retry", ""},
		{"GET", "/v1/slideshows/job1/retry", ""}, // 405 only once authenticated
		{"GET", "/v1/usage", ""},
		{"GET", "/metrics", ""},
		{"DELETE", "/v1/slideshows/job1", ""}, // 405 only once authenticated
		{"GET", "/v1/unknown", ""},            // 404 only once authenticated
	}
	creds := []struct {
		name      string
		header    string // Authorization; "" for none
		ok        bool
		challenge string
	}{
		{"missing", "", false, `Bearer realm="slideshowd"`},
		{"wrong", "Bearer wrong-token-0123456789abcdef", false, `Bearer realm="slideshowd", error="invalid_token"`},
		{"prefix of the token", "Bearer " + testToken[:len(testToken)-1], false, `Bearer realm="slideshowd", error="invalid_token"`},
		{"token plus more", "Bearer " + testToken + "0", false, `Bearer realm="slideshowd", error="invalid_token"`},
		{"basic scheme", "Basic " + testToken, false, `Bearer realm="slideshowd"`},
		{"no scheme", testToken, false, `Bearer realm="slideshowd"`},
		{"empty bearer", "Bearer ", false, `Bearer realm="slideshowd"`},
		{"right", "Bearer " + testToken, true, ""},
		{"scheme case-insensitive", "bearer " + testToken, true, ""},
	}
	for _, ep := range endpoints {
		for _, c := range creds {
			t.Run(ep.method+" "+ep.path+"/"+c.name, func(t *testing.T) {
				env := newEnv(t, func(cfg *Config) {
					cfg.Token = testToken
					cfg.Metrics = NewMetrics(nil)
					cfg.Summary = func() scheduler.Summary { return scheduler.Summary{} }
				})
				var opts []reqOpt
				if c.header != "" {
					opts = append(opts, withHeader("Authorization", c.header))
				}
				w := env.do(t, ep.method, ep.path, ep.body, opts...)
				if !c.ok {
					if w.Code != http.StatusUnauthorized {
						t.Fatalf("%d %s, want 401", w.Code, w.Body)
					}
					if got := w.Header().Get("WWW-Authenticate"); got != c.challenge {
						t.Errorf("WWW-Authenticate %q, want %q", got, c.challenge)
					}
					apiErr(t, w)
					if n := len(env.svc.requests()); n != 0 {
						t.Errorf("%d submitted without authentication", n)
					}
					return
				}
				if w.Code == http.StatusUnauthorized {
					t.Fatalf("401 with the right token: %s", w.Body)
				}
			})
		}
	}
}

func TestAuthOff(t *testing.T) {
	env := newEnv(t, nil)
	if w := env.do(t, "POST", "/v1/slideshows", validBody); w.Code != 202 {
		t.Fatalf("without a configured token: %d %s", w.Code, w.Body)
	}
	// A token sent anyway is ignored.
	if w := env.do(t, "GET", "/v1/slideshows/job1", "", withToken("whatever")); w.Code != 200 {
		t.Fatalf("%d %s", w.Code, w.Body)
	}
}

func TestTokenMatches(t *testing.T) {
	want := tokenDigest(testToken)
	tests := []struct {
		presented string
		ok        bool
	}{
		{testToken, true},
		{"", false},
		{testToken[:1], false},
		{testToken + testToken, false},
		{strings.ToUpper(testToken), false},
	}
	for _, tt := range tests {
		if got := tokenMatches(tt.presented, want); got != tt.ok {
			t.Errorf("tokenMatches(%q) = %v, want %v", tt.presented, got, tt.ok)
		}
	}
}

func TestMetricsEndpoint(t *testing.T) {
	t.Run("protected by default", func(t *testing.T) {
		env := newEnv(t, func(c *Config) { c.Token = testToken; c.Metrics = NewMetrics(nil) })
		if w := env.do(t, "GET", "/metrics", ""); w.Code != 401 {
			t.Fatalf("%d, want 401", w.Code)
		}
		if w := env.do(t, "GET", "/metrics", "", withToken(testToken)); w.Code != 200 {
			t.Fatalf("%d, want 200", w.Code)
		}
	})
	t.Run("public", func(t *testing.T) {
		env := newEnv(t, func(c *Config) { c.Token = testToken; c.Metrics = NewMetrics(nil); c.PublicMetrics = true })
		if w := env.do(t, "GET", "/metrics", ""); w.Code != 200 {
			t.Fatalf("%d, want 200", w.Code)
		}
		if w := env.do(t, "GET", "/v1/usage", ""); w.Code != 401 {
			t.Fatalf("usage stays protected: %d", w.Code)
		}
	})
	t.Run("exposition", func(t *testing.T) {
		m := NewMetrics(nil)
		m.Attach(func() scheduler.Summary {
			return scheduler.Summary{Classes: []scheduler.ClassSummary{{Name: "text", QueuedNormal: 3,
				Lanes: []scheduler.LaneSummary{{Project: "key1", Enabled: true, RPMUsed: 4, RPMLimit: 900, DayLimit: 9000}}}}}
		})
		m.Observe(scheduler.Event{Kind: scheduler.EventFinished, Class: "text", KeyID: "key1", Outcome: "ok"})
		env := newEnv(t, func(c *Config) { c.Metrics = m })
		env.do(t, "GET", "/healthz", "")
		env.do(t, "GET", "/v1/slideshows/nope", "")
		w := env.do(t, "GET", "/metrics", "")
		if w.Code != 200 || !strings.HasPrefix(w.Header().Get("Content-Type"), "text/plain") {
			t.Fatalf("%d %v", w.Code, w.Header())
		}
		parser := expfmt.NewTextParser(model.LegacyValidation)
		fams, err := parser.TextToMetricFamilies(strings.NewReader(w.Body.String()))
		if err != nil {
			t.Fatalf("parsing the exposition: %v\n%s", err, w.Body)
		}
		value := func(name string, labels map[string]string) (float64, bool) {
			mf, ok := fams[name]
			if !ok {
				return 0, false
			}
		metrics:
			for _, m := range mf.GetMetric() {
				have := map[string]string{}
				for _, lp := range m.GetLabel() {
					have[lp.GetName()] = lp.GetValue()
				}
				for k, v := range labels {
					if have[k] != v {
						continue metrics
					}
				}
				switch {
				case m.Counter != nil:
					return m.GetCounter().GetValue(), true
				case m.Gauge != nil:
					return m.GetGauge().GetValue(), true
				}
			}
			return 0, false
		}
		checks := []struct {
			name   string
			labels map[string]string
			want   float64
		}{
			{"slideshowd_calls_total", map[string]string{"class": "text", "key": "key1", "outcome": "ok"}, 1},
			{"slideshowd_queue_depth", map[string]string{"class": "text", "priority": "normal"}, 3},
			{"slideshowd_lane_rpm_used", map[string]string{"class": "text", "project": "key1"}, 4},
			{"slideshowd_lane_day_remaining", map[string]string{"class": "text", "project": "key1"}, 9000},
			{"slideshowd_http_requests_total", map[string]string{"route": "GET /healthz", "method": "GET", "code": "200"}, 1},
			{"slideshowd_http_requests_total", map[string]string{"route": "GET /v1/slideshows/{id}", "method": "GET", "code": "404"}, 1},
		}
		for _, c := range checks {
			if got, ok := value(c.name, c.labels); !ok || got != c.want {
				t.Errorf("%s%v = %v (found %v), want %v", c.name, c.labels, got, ok, c.want)
			}
		}
		if _, ok := fams["go_goroutines"]; !ok {
			t.Error("NewMetrics(nil) registry lacks the Go collector")
		}
		for name := range fams {
			if !model.LegacyValidation.IsValidMetricName(name) {
				t.Errorf("invalid metric name %q", name)
			}
		}
	})
}
