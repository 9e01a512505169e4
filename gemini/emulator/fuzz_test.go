package emulator

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// FuzzGenerateContent feeds arbitrary bodies to generateContent: the
// emulator never panics, always answers a JSON body with a known status,
// and a JSON-mode answer is valid JSON.
func FuzzGenerateContent(f *testing.F) {
	for _, seed := range []string{
		simpleBody,
		``,
		`{`,
		`[]`,
		`{"contents":[{"parts":[{"text":"x"}]}],"generationConfig":{"responseMimeType":"application/json","responseSchema":{"type":"OBJECT","properties":{"a":{"type":"ARRAY","items":{"type":"INTEGER","minimum":3,"maximum":4},"minItems":2,"maxItems":2},"b":{"type":"STRING","enum":["x","y"]}},"required":["a"]}}}`,
		`{"contents":[{"parts":[{"text":"x"}]}],"generationConfig":{"responseMimeType":"application/json","responseJsonSchema":{"anyOf":[{"type":"null"},{"type":"number","exclusiveMinimum":0,"exclusiveMaximum":1}]}}}`,
		`{"contents":[{"parts":[{"text":"x"}]}],"generationConfig":{"responseMimeType":"application/json","responseJsonSchema":{"type":"array","items":{"$ref":"#/$defs/t"},"$defs":{"t":{"type":"object","properties":{"kids":{"type":"array","items":{"$ref":"#/$defs/t"}}}}}}}}`,
		`{"contents":[{"role":"model","parts":[{"inlineData":{"mimeType":"image/png","data":"iVBORw0KGgo="}}]}]}`,
		`{"contents":[{"parts":[{"text":"x"}]}],"generationConfig":{"responseMimeType":"text/x.enum","responseSchema":{"type":"STRING","enum":["a"]}}}`,
		`{"contents":[{"parts":[{"text":"x"}]}],"generationConfig":{"maxOutputTokens":1,"candidateCount":2}}`,
		`{"contents":[{"parts":[{"text":"x"}]}],"generationConfig":{"responseMimeType":"application/json","responseSchema":{"type":"STRING","minLength":5,"maxLength":6,"format":"date-time"}}}`,
	} {
		f.Add(seed, false)
		f.Add(seed, true)
	}
	e := mustNew(f, Config{Keys: []Key{{Name: "k", Secret: "s"}}, Models: map[string]Limits{textModel: {}, imageModel: {}}, ImageScale: 1.0 / 64})
	f.Fuzz(func(t *testing.T, body string, image bool) {
		model := textModel
		if image {
			model = imageModel
		}
		r := httptest.NewRequest(http.MethodPost, "/v1beta/models/"+model+":generateContent", strings.NewReader(body))
		r.Header.Set("x-goog-api-key", "s")
		w := httptest.NewRecorder()
		e.ServeHTTP(w, r)
		switch w.Code {
		case 200:
			var resp struct {
				Candidates []struct {
					Content struct {
						Parts []struct{ Text string }
					}
					FinishReason string
				}
			}
			if err := json.Unmarshal(w.Body.Bytes(), &resp); err != nil {
				t.Fatalf("200 body is not JSON: %v", err)
			}
			if strings.Contains(body, "application/json") && !image {
				for _, c := range resp.Candidates {
					if c.FinishReason == "STOP" && len(c.Content.Parts) > 0 && !json.Valid([]byte(c.Content.Parts[0].Text)) {
						var req map[string]any
						if json.Unmarshal([]byte(body), &req) == nil {
							t.Fatalf("JSON-mode answer is not JSON: %q", c.Content.Parts[0].Text)
						}
					}
				}
			}
		case 400:
			re := decodeError(t, w.Body.Bytes())
			if re.Error.Status != "INVALID_ARGUMENT" || re.Error.Message == "" {
				t.Fatalf("400 body %s", w.Body)
			}
		default:
			t.Fatalf("status %d: %s", w.Code, w.Body)
		}
	})
}

// FuzzCountTokens: countTokens answers 200 with a count or 400, never panics.
func FuzzCountTokens(f *testing.F) {
	f.Add(`{"contents":[{"parts":[{"text":"hello"}]}]}`)
	f.Add(`{"generateContentRequest":{"model":"models/x","contents":[{"parts":[{"text":"hello"}]}]}}`)
	f.Add(`{"contents":[],"generateContentRequest":{}}`)
	e := mustNew(f, Config{Keys: []Key{{Name: "k", Secret: "s"}}})
	f.Fuzz(func(t *testing.T, body string) {
		code, out := rawPost(t, e, "/v1beta/models/"+textModel+":countTokens", "s", body)
		switch code {
		case 200:
			var ct struct{ TotalTokens *int }
			if json.Unmarshal(out, &ct) != nil || ct.TotalTokens == nil || *ct.TotalTokens < 0 {
				t.Fatalf("200 body %s", out)
			}
		case 400:
			decodeError(t, out)
		default:
			t.Fatalf("status %d: %s", code, out)
		}
	})
}
