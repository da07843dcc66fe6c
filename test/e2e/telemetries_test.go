package e2e

import (
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"
)

// TestTelemetriesCRUD: a telemetry is created, listed and read without its
// secret ever coming back, its secret replaced, and deleted; a malformed
// body is a 400 problem, another id a 404.
func TestTelemetriesCRUD(t *testing.T) {
	t.Parallel()
	p := startPlatform(t, t.TempDir())
	const secret = "telemetry-secret-value-7f3a"
	send := func(method, path, body string) (int, string) {
		t.Helper()
		r := newRequest(t, method, p.URL()+path, p.AdminToken())
		if body != "" {
			r.Body = io.NopCloser(strings.NewReader(body))
			r.Header.Set("Content-Type", "application/json")
		}
		resp, err := http.DefaultClient.Do(r)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		if strings.Contains(string(b), secret) {
			t.Errorf("%s %s answered the telemetry's secret: %s", method, path, b)
		}
		return resp.StatusCode, string(b)
	}

	status, body := send("POST", "/v2/nvcf/telemetries", `{"endpoint":"https://otel.example.com:4318","protocol":"HTTP",
		"provider":"OTEL_COLLECTOR","types":["LOGS","METRICS"],"secret":{"name":"otel-key","value":"`+secret+`"}}`)
	if status != http.StatusOK {
		t.Fatalf("create: %d %s", status, body)
	}
	var created struct {
		Telemetry struct {
			ID   string `json:"telemetryId"`
			Name string `json:"name"`
		} `json:"telemetry"`
	}
	if err := json.Unmarshal([]byte(body), &created); err != nil || created.Telemetry.ID == "" || created.Telemetry.Name != "otel-key" {
		t.Fatalf("create answered %s (%v)", body, err)
	}
	id := created.Telemetry.ID

	if status, body := send("GET", "/v2/nvcf/telemetries", ""); status != http.StatusOK || !strings.Contains(body, id) {
		t.Errorf("list: %d %s", status, body)
	}
	if status, body := send("GET", "/v2/nvcf/telemetries/"+id, ""); status != http.StatusOK || !strings.Contains(body, "otel.example.com") {
		t.Errorf("get: %d %s", status, body)
	}
	if status, body := send("PUT", "/v2/nvcf/secrets/telemetries/"+id, `{"value":"`+secret+`-2"}`); status != http.StatusNoContent {
		t.Errorf("replace secret: %d %s", status, body)
	}
	for _, bad := range []string{`{`, `{"endpoint":"not a url","protocol":"HTTP","provider":"OTEL_COLLECTOR","types":["LOGS"],"secret":{"name":"n","value":"v"}}`} {
		status, body := send("POST", "/v2/nvcf/telemetries", bad)
		if status != http.StatusBadRequest || !strings.Contains(body, `"detail"`) {
			t.Errorf("create %.30q: %d %s, want a 400 problem", bad, status, body)
		}
	}
	if status, body := send("DELETE", "/v2/nvcf/telemetries/"+id, ""); status != http.StatusNoContent {
		t.Fatalf("delete: %d %s", status, body)
	}
	if status, body := send("GET", "/v2/nvcf/telemetries/"+id, ""); status != http.StatusNotFound {
		t.Errorf("get after delete: %d %s, want 404", status, body)
	}
}
