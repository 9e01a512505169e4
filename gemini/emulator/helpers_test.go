package emulator

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"
	"google.golang.org/genai"
)

func TestMain(m *testing.M) {
	// genai's dependencies import opencensus, whose init starts a worker
	// goroutine that lives for the whole process.
	goleak.VerifyTestMain(m, goleak.IgnoreTopFunction("go.opencensus.io/stats/view.(*worker).start"))
}

const (
	textModel  = DefaultTextModel
	imageModel = DefaultImageModel
)

func mustNew(t testing.TB, cfg Config) *Emulator {
	t.Helper()
	e, err := New(cfg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return e
}

// client returns a genai client that reaches e in-process with secret.
func client(t testing.TB, e *Emulator, secret string) *genai.Client {
	t.Helper()
	c, err := genai.NewClient(context.Background(), &genai.ClientConfig{
		APIKey:      secret,
		Backend:     genai.BackendGeminiAPI,
		HTTPClient:  &http.Client{Transport: e.Transport()},
		HTTPOptions: genai.HTTPOptions{BaseURL: "http://emulator", APIVersion: "v1beta"},
	})
	if err != nil {
		t.Fatalf("genai.NewClient: %v", err)
	}
	return c
}

// generate sends one text prompt through the genai client.
func generate(ctx context.Context, c *genai.Client, model, prompt string) (*genai.GenerateContentResponse, error) {
	return c.Models.GenerateContent(ctx, model, genai.Text(prompt), nil)
}

// asAPIError extracts the genai.APIError of err, failing the test if there is none.
func asAPIError(t testing.TB, err error) genai.APIError {
	t.Helper()
	var ae genai.APIError
	if !errors.As(err, &ae) {
		t.Fatalf("want a genai.APIError, got %v", err)
	}
	return ae
}

// mustOK fails the test if err is not nil.
func mustOK(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatalf("unexpected error: %v", err)
	}
}

// rawPost serves one POST with e directly and returns the status and body.
func rawPost(t testing.TB, e *Emulator, path, secret, body string) (int, []byte) {
	t.Helper()
	r := httptest.NewRequest(http.MethodPost, path, strings.NewReader(body))
	if secret != "" {
		r.Header.Set("x-goog-api-key", secret)
	}
	w := httptest.NewRecorder()
	e.ServeHTTP(w, r)
	return w.Code, w.Body.Bytes()
}

const genPath = "/v1beta/models/" + textModel + ":generateContent"

const simpleBody = `{"contents":[{"role":"user","parts":[{"text":"hello"}]}]}`

// rawError decodes an error body into generic JSON.
type rawError struct {
	Error struct {
		Code    int              `json:"code"`
		Message string           `json:"message"`
		Status  string           `json:"status"`
		Details []map[string]any `json:"details"`
	} `json:"error"`
}

func decodeError(t testing.TB, body []byte) rawError {
	t.Helper()
	var re rawError
	if err := json.Unmarshal(body, &re); err != nil {
		t.Fatalf("error body is not JSON: %v\n%s", err, body)
	}
	return re
}

// quotaIDs returns the quotaIds of the QuotaFailure in details, in order.
func quotaIDs(details []map[string]any) []string {
	var ids []string
	for _, d := range details {
		if d["@type"] != typeQuotaFailure {
			continue
		}
		for _, v := range d["violations"].([]any) {
			ids = append(ids, v.(map[string]any)["quotaId"].(string))
		}
	}
	return ids
}

// retryDelayOf returns the RetryInfo retryDelay in details, or "" if none.
func retryDelayOf(details []map[string]any) string {
	for _, d := range details {
		if d["@type"] == typeRetryInfo {
			return d["retryDelay"].(string)
		}
	}
	return ""
}

// pacific is America/Los_Angeles.
func pacific(t testing.TB) *time.Location {
	t.Helper()
	loc, err := time.LoadLocation("America/Los_Angeles")
	if err != nil {
		t.Fatal(err)
	}
	return loc
}

// sleepUntil advances the (synctest) clock to at.
func sleepUntil(at time.Time) {
	time.Sleep(time.Until(at))
}
