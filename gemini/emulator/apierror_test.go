package emulator

import (
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"testing/synctest"
	"time"
)

func TestLayoutsOf429(t *testing.T) {
	for _, tc := range []struct {
		layout   Layout
		freeTier bool
		types    []string // @type of each detail, in order
		message  func(string) bool
	}{
		{Layout2025, true, []string{typeQuotaFailure, typeHelp, typeRetryInfo}, func(m string) bool { return m == msgQuota }},
		{Layout2025, false, []string{typeQuotaFailure, typeHelp, typeRetryInfo}, func(m string) bool { return m == msgQuota }},
		{Layout2026, true, []string{typeHelp, typeQuotaFailure, typeRetryInfo}, func(m string) bool {
			return strings.HasPrefix(m, msgQuota) &&
				strings.Contains(m, "\n* Quota exceeded for metric: generativelanguage.googleapis.com/generate_content_free_tier_requests, limit: 2, model: gemini-3-flash-preview\n") &&
				strings.HasSuffix(m, "Please retry in 30.250s.")
		}},
		{LayoutBare, true, nil, func(m string) bool { return m == "Resource has been exhausted (e.g. check quota)." }},
		{LayoutHelpOnly, false, []string{typeHelp}, func(m string) bool { return strings.HasPrefix(m, msgQuota) }},
	} {
		t.Run(fmt.Sprintf("%v/free=%v", tc.layout, tc.freeTier), func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				cfg := oneKey(Limits{RPM: 2})
				cfg.Layout, cfg.FreeTier = tc.layout, tc.freeTier
				e := mustNew(t, cfg)
				for range 2 {
					if code, body := rawPost(t, e, genPath, "secret-1", simpleBody); code != 200 {
						t.Fatalf("status %d: %s", code, body)
					}
				}
				time.Sleep(29*time.Second + 750*time.Millisecond)
				code, body := rawPost(t, e, genPath, "secret-1", simpleBody)
				if code != 429 {
					t.Fatalf("status %d, want 429", code)
				}
				if strings.Contains(string(body), "secret-1") {
					t.Fatal("the body shows the key's secret")
				}
				re := decodeError(t, body)
				if re.Error.Code != 429 || re.Error.Status != "RESOURCE_EXHAUSTED" {
					t.Fatalf("code %d status %q", re.Error.Code, re.Error.Status)
				}
				if !tc.message(re.Error.Message) {
					t.Errorf("message %q", re.Error.Message)
				}
				var types []string
				for _, d := range re.Error.Details {
					types = append(types, d["@type"].(string))
				}
				if fmt.Sprint(types) != fmt.Sprint(tc.types) {
					t.Fatalf("detail types %v, want %v", types, tc.types)
				}
				for _, d := range re.Error.Details {
					switch d["@type"] {
					case typeRetryInfo:
						if d["retryDelay"] != "30.250s" {
							t.Errorf("retryDelay %v, want 30.250s", d["retryDelay"])
						}
					case typeHelp:
						link := d["links"].([]any)[0].(map[string]any)
						if link["url"] != "https://ai.google.dev/gemini-api/docs/rate-limits" {
							t.Errorf("help link %v", link)
						}
					case typeQuotaFailure:
						v := d["violations"].([]any)[0].(map[string]any)
						wantID, wantMetric := QuotaRequestsPerMinute, "generativelanguage.googleapis.com/generate_requests_per_model"
						if tc.freeTier {
							wantID += FreeTierSuffix
							wantMetric = "generativelanguage.googleapis.com/generate_content_free_tier_requests"
						}
						dims := v["quotaDimensions"].(map[string]any)
						if v["quotaId"] != wantID || v["quotaMetric"] != wantMetric || v["quotaValue"] != "2" ||
							dims["location"] != "global" || dims["model"] != textModel {
							t.Errorf("violation %v", v)
						}
					}
				}
				wantID := QuotaRequestsPerMinute
				if tc.freeTier {
					wantID += FreeTierSuffix
				}
				if got := e.Stats().RateLimited[wantID]; got != 1 {
					t.Errorf("RateLimited[%s] = %d (counted whatever the layout shows)", wantID, got)
				}
			})
		})
	}
}

func TestPerDayQuotaMetricPaidTier(t *testing.T) {
	e := mustNew(t, oneKey(Limits{RPD: 1}))
	rawPost(t, e, genPath, "secret-1", simpleBody)
	_, body := rawPost(t, e, genPath, "secret-1", simpleBody)
	re := decodeError(t, body)
	v := re.Error.Details[0]["violations"].([]any)[0].(map[string]any)
	if v["quotaId"] != QuotaRequestsPerDay || v["quotaMetric"] != "generativelanguage.googleapis.com/generate_requests_per_model_per_day" {
		t.Errorf("violation %v", v)
	}
}

func TestInvalidKey(t *testing.T) {
	e := mustNew(t, oneKey(Limits{}))
	for name, secret := range map[string]string{"missing": "", "unknown": "not-a-key"} {
		t.Run(name, func(t *testing.T) {
			if secret == "" {
				// genai refuses an empty APIKey (or takes one from the
				// environment): send the request without any key directly.
				code, body := rawPost(t, e, genPath, "", simpleBody)
				checkKeyInvalid(t, code, decodeError(t, body))
				return
			}
			_, err := generate(t.Context(), client(t, e, secret), textModel, "hello")
			ae := asAPIError(t, err)
			if ae.Code != 400 || ae.Status != "INVALID_ARGUMENT" {
				t.Fatalf("got %d %s", ae.Code, ae.Status)
			}
			if len(ae.Details) == 0 || ae.Details[0]["reason"] != "API_KEY_INVALID" || ae.Details[0]["domain"] != "googleapis.com" ||
				ae.Details[0]["@type"] != typeErrorInfo {
				t.Fatalf("details %v", ae.Details)
			}
			if strings.Contains(ae.Error(), secret) {
				t.Fatal("the error shows the secret")
			}
		})
	}
	if got := e.Stats().Requests[RequestKey{"", textModel, 400}]; got != 2 {
		t.Errorf("Requests[no key, 400] = %d, want 2", got)
	}
}

func checkKeyInvalid(t *testing.T, code int, re rawError) {
	t.Helper()
	if code != 400 || re.Error.Status != "INVALID_ARGUMENT" || re.Error.Message != "API key not valid. Please pass a valid API key." {
		t.Fatalf("got %d %+v", code, re.Error)
	}
	if re.Error.Details[0]["reason"] != "API_KEY_INVALID" {
		t.Fatalf("details %v", re.Error.Details)
	}
}

func TestKeyInQueryParameter(t *testing.T) {
	e := mustNew(t, oneKey(Limits{}))
	code, body := rawPost(t, e, genPath+"?key=secret-1", "", simpleBody)
	if code != 200 {
		t.Fatalf("status %d: %s", code, body)
	}
	code, body = rawPost(t, e, genPath+"?key=wrong", "", simpleBody)
	checkKeyInvalid(t, code, decodeError(t, body))
}

func TestLeakedKey(t *testing.T) {
	e := mustNew(t, Config{Keys: []Key{{Name: "k1", Secret: "s1", Leaked: true}, {Name: "k2", Secret: "s2"}}})
	c1, c2 := client(t, e, "s1"), client(t, e, "s2")
	for _, model := range []string{textModel, imageModel} {
		_, err := generate(t.Context(), c1, model, "hello")
		ae := asAPIError(t, err)
		if ae.Code != 403 || ae.Status != "PERMISSION_DENIED" || ae.Message != "Your API key was reported as leaked. Please use another API key." {
			t.Fatalf("%s: got %+v", model, ae)
		}
	}
	_, err := generate(t.Context(), c2, textModel, "hello")
	mustOK(t, err)
	mustOK(t, e.SetLeaked("k2", true))
	_, err = generate(t.Context(), c2, textModel, "hello")
	if ae := asAPIError(t, err); ae.Code != 403 {
		t.Fatalf("after SetLeaked: %v", err)
	}
	mustOK(t, e.SetLeaked("k1", false))
	_, err = generate(t.Context(), c1, textModel, "hello")
	mustOK(t, err)
	if err := e.SetLeaked("nobody", true); !errors.Is(err, ErrUnknownKey) {
		t.Fatalf("SetLeaked(unknown) = %v, want ErrUnknownKey", err)
	}
	s := e.Stats()
	if s.Requests[RequestKey{"k1", textModel, 403}] != 1 || s.Requests[RequestKey{"k1", imageModel, 403}] != 1 || s.Requests[RequestKey{"k2", textModel, 403}] != 1 {
		t.Errorf("Requests %v", s.Requests)
	}
}

func TestAddKey(t *testing.T) {
	e := mustNew(t, oneKey(Limits{}))
	c := client(t, e, "new-secret")
	_, err := generate(t.Context(), c, textModel, "hello")
	if ae := asAPIError(t, err); ae.Code != 400 {
		t.Fatalf("before AddKey: %v", err)
	}
	mustOK(t, e.AddKey(Key{Name: "k2", Secret: "new-secret"}))
	_, err = generate(t.Context(), c, textModel, "hello")
	mustOK(t, err)
	for _, k := range []Key{{Name: "k2", Secret: "other"}, {Name: "k3", Secret: "secret-1"}} {
		if err := e.AddKey(k); !errors.Is(err, ErrDuplicateKey) {
			t.Errorf("AddKey(%s) = %v, want ErrDuplicateKey", k.Name, err)
		}
	}
	if err := e.AddKey(Key{Name: "k4"}); !errors.Is(err, ErrInvalidConfig) {
		t.Errorf("AddKey without secret = %v, want ErrInvalidConfig", err)
	}
}

func TestUnknownModel(t *testing.T) {
	e := mustNew(t, oneKey(Limits{}))
	c := client(t, e, "secret-1")
	_, err := generate(t.Context(), c, "gemini-0-nonexistent", "hello")
	ae := asAPIError(t, err)
	want := "models/gemini-0-nonexistent is not found for API version v1beta, or is not supported for generateContent. Call ListModels to see the list of available models and their supported methods."
	if ae.Code != 404 || ae.Status != "NOT_FOUND" || ae.Message != want {
		t.Fatalf("got %+v", ae)
	}
}

func TestBadRequests(t *testing.T) {
	e := mustNew(t, oneKey(Limits{RPM: 1}))
	imgPath := "/v1beta/models/" + imageModel + ":generateContent"
	for _, tc := range []struct {
		name, path, body string
		want             string // the message must contain this
	}{
		{"syntax", genPath, `{"contents": [}`, "Invalid JSON payload received. Unexpected token.\n{\"contents\": [}\n              ^"},
		{"not an object", genPath, `[1, 2]`, "Invalid JSON payload received. Unexpected token."},
		{"unknown field", genPath, `{"contents":[{"parts":[{"text":"x"}]}],"foo":1}`, `Invalid JSON payload received. Unknown name "foo": Cannot find field.`},
		{"unknown nested field", genPath, `{"contents":[{"parts":[{"text":"x"}]}],"generationConfig":{"colour":1}}`, `Unknown name "colour" at 'generation_config': Cannot find field.`},
		{"wrong type", genPath, `{"contents":"x"}`, `Invalid value at 'contents' (type.googleapis.com/google.ai.generativelanguage.v1beta.Content), "x"`},
		{"wrong scalar type", genPath, `{"contents":[{"parts":[{"text":"x"}]}],"generationConfig":{"candidateCount":"two"}}`, `Invalid value at 'generation_config.candidate_count' (TYPE_INT32), "two"`},
		{"no contents", genPath, `{}`, "* GenerateContentRequest.contents: contents is not specified"},
		{"empty body", genPath, ``, "contents is not specified"},
		{"empty parts", genPath, `{"contents":[{"role":"user","parts":[]}]}`, "contents[0].parts: contents.parts must not be empty"},
		{"empty part", genPath, `{"contents":[{"parts":[{}]}]}`, "contents[0].parts[0].data: required oneof field 'data' must have one initialized field"},
		{"bad role", genPath, `{"contents":[{"role":"robot","parts":[{"text":"x"}]}]}`, "Please use a valid role: user, model."},
		{"bad base64", genPath, `{"contents":[{"parts":[{"inlineData":{"mimeType":"image/png","data":"%%%"}}]}]}`, "Base64 decoding failed"},
		{"bad aspect ratio", imgPath, `{"contents":[{"parts":[{"text":"x"}]}],"generationConfig":{"responseModalities":["IMAGE"],"imageConfig":{"aspectRatio":"7:3"}}}`, `"7:3"`},
		{"bad image size", imgPath, `{"contents":[{"parts":[{"text":"x"}]}],"generationConfig":{"imageConfig":{"imageSize":"8K"}}}`, `"8K"`},
		{"image from text model", genPath, `{"contents":[{"parts":[{"text":"x"}]}],"generationConfig":{"responseModalities":["TEXT","IMAGE"]}}`, "Model does not support the requested response modalities: image"},
		{"schema without JSON", genPath, `{"contents":[{"parts":[{"text":"x"}]}],"generationConfig":{"responseSchema":{"type":"STRING"}}}`, "response_schema"},
		{"bad schema type", genPath, `{"contents":[{"parts":[{"text":"x"}]}],"generationConfig":{"responseMimeType":"application/json","responseSchema":{"type":"OBJECT","properties":{"a":{"type":"WORD"}}}}}`, `response_schema.properties["a"].type: invalid value "WORD"`},
		{"required not defined", genPath, `{"contents":[{"parts":[{"text":"x"}]}],"generationConfig":{"responseMimeType":"application/json","responseSchema":{"type":"OBJECT","required":["b"]}}}`, `"b" is required`},
		{"too many states", genPath, `{"contents":[{"parts":[{"text":"x"}]}],"generationConfig":{"responseMimeType":"application/json","responseSchema":{"type":"ARRAY","minItems":1000,"maxItems":1000,"items":{"type":"ARRAY","minItems":1000,"maxItems":1000,"items":{"type":"STRING"}}}}}`, "too many states for serving"},
		{"required cycle", genPath, `{"contents":[{"parts":[{"text":"x"}]}],"generationConfig":{"responseMimeType":"application/json","responseJsonSchema":{"$ref":"#/$defs/n","$defs":{"n":{"type":"object","required":["next"],"properties":{"next":{"$ref":"#/$defs/n"}}}}}}}`, "too many states for serving"},
		{"min above max", genPath, `{"contents":[{"parts":[{"text":"x"}]}],"generationConfig":{"responseMimeType":"application/json","responseSchema":{"type":"ARRAY","minItems":3,"maxItems":2}}}`, "min_items (3) is greater than max_items (2)"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, body := rawPost(t, e, tc.path, "secret-1", tc.body)
			re := decodeError(t, body)
			if code != 400 || re.Error.Code != 400 || re.Error.Status != "INVALID_ARGUMENT" {
				t.Fatalf("got %d %+v", code, re.Error)
			}
			if !strings.Contains(re.Error.Message, tc.want) {
				t.Fatalf("message %q does not contain %q", re.Error.Message, tc.want)
			}
		})
	}
	// None of them used the quota of 1 RPM.
	if code, body := rawPost(t, e, genPath, "secret-1", simpleBody); code != 200 {
		t.Fatalf("after bad requests: %d %s", code, body)
	}
}

func TestSnakeCaseNamesAccepted(t *testing.T) {
	e := mustNew(t, oneKey(Limits{}))
	body := `{"contents":[{"role":"user","parts":[{"text":"harbor"}]}],"generation_config":{"response_mime_type":"application/json","response_schema":{"type":"OBJECT","properties":{"title":{"type":"STRING"}},"required":["title"]}}}`
	code, out := rawPost(t, e, genPath, "secret-1", body)
	if code != 200 || !strings.Contains(string(out), `\"title\"`) {
		t.Fatalf("%d %s", code, out)
	}
}

func TestBodyTooLarge(t *testing.T) {
	e := mustNew(t, Config{Keys: []Key{{Name: "k", Secret: "s"}}, MaxBodyBytes: 1000})
	code, body := rawPost(t, e, genPath, "s", `{"contents":[{"parts":[{"text":"`+strings.Repeat("a", 2000)+`"}]}]}`)
	if re := decodeError(t, body); code != 400 || re.Error.Message != "Request payload size exceeds the limit: 1000 bytes." {
		t.Fatalf("%d %+v", code, re.Error)
	}
}

func TestRoutes(t *testing.T) {
	e := mustNew(t, oneKey(Limits{}))
	for _, tc := range []struct {
		method, path string
		code         int
		contains     string
	}{
		{http.MethodGet, genPath, 404, "Method not found."},
		{http.MethodPut, genPath, 404, "Method not found."},
		{http.MethodPost, "/v1beta/models/" + textModel + ":embedContent", 404, "Method not found."},
		{http.MethodPost, "/v2/models/" + textModel + ":generateContent", 404, "Method not found."},
		{http.MethodPost, "/", 404, "Method not found."},
		{http.MethodGet, "/v1beta/models", 200, `"name": "models/gemini-3-flash-preview"`},
		{http.MethodGet, "/v1beta/models/" + imageModel, 200, `"supportedGenerationMethods"`},
		{http.MethodGet, "/v1beta/models/nope", 404, "models/nope is not found"},
		{http.MethodPost, "/v1/models/" + textModel + ":generateContent", 200, `"candidates"`},
		{http.MethodPost, "/v1beta/models/nope:countTokens", 404, "or is not supported for countTokens"},
	} {
		t.Run(tc.method+" "+tc.path, func(t *testing.T) {
			r := httptest.NewRequest(tc.method, tc.path, strings.NewReader(simpleBody))
			r.Header.Set("x-goog-api-key", "secret-1")
			w := httptest.NewRecorder()
			e.ServeHTTP(w, r)
			if w.Code != tc.code || !strings.Contains(w.Body.String(), tc.contains) {
				t.Fatalf("got %d %s", w.Code, w.Body)
			}
		})
	}
}

func TestFormatDuration(t *testing.T) {
	for d, want := range map[time.Duration]string{
		0:                          "0s",
		-time.Second:               "0s",
		26 * time.Second:           "26s",
		7967587226:                 "7.967587226s",
		1500 * time.Millisecond:    "1.500s",
		1000001 * time.Microsecond: "1.000001s",
		59*time.Second + 10:        "59.000000010s",
	} {
		if got := formatDuration(d); got != want {
			t.Errorf("formatDuration(%v) = %q, want %q", d, got, want)
		}
	}
}
