package httpapi

import (
	"encoding/json"
	"strings"
	"testing"
)

func TestRedactor(t *testing.T) {
	tests := []struct {
		name    string
		secrets []string
		in      any
		want    string // the JSON after redaction
	}{
		{"none", nil, map[string]string{"a": "key-1"}, `{"a":"key-1"}`},
		{"empty secrets ignored", []string{"", ""}, "abc", `"abc"`},
		{"plain", []string{"AIzaSECRET"}, "bad key AIzaSECRET!", `"bad key [REDACTED]!"`},
		{"several times", []string{"AIzaSECRET"}, []string{"AIzaSECRET", "xAIzaSECRETx"}, `["[REDACTED]","x[REDACTED]x"]`},
		{"longest first", []string{"abc", "abcdef"}, "abcdef abc", `"[REDACTED] [REDACTED]"`},
		{"JSON special characters", []string{`se"c\r<e>t&`}, `got se"c\r<e>t& here`, `"got [REDACTED] here"`},
		{"unicode", []string{"clé\u2028"}, "x clé\u2028 y", `"x [REDACTED] y"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := newRedactor(tt.secrets)
			b, err := marshalJSON(tt.in)
			if err != nil {
				t.Fatal(err)
			}
			got := r.JSON(b)
			if strings.TrimSpace(string(got)) != tt.want {
				t.Errorf("JSON: %s, want %s", got, tt.want)
			}
			if !json.Valid(got) {
				t.Errorf("redacted JSON is invalid: %s", got)
			}
			if s, ok := tt.in.(string); ok {
				var plain string
				_ = json.Unmarshal([]byte(tt.want), &plain)
				if got := r.String(s); got != plain {
					t.Errorf("String: %q, want %q", got, plain)
				}
			}
		})
	}
}
