package detect

import (
	"bufio"
	"bytes"
	"fmt"
	"net/http"
	"strconv"

	coreruleset "github.com/corazawaf/coraza-coreruleset/v4"
	"github.com/corazawaf/coraza/v3"

	"github.com/deepwall/deepwall/internal/testnet"
)

// corazaRunner runs requests through Coraza v3 with the embedded Core Rule Set
// at one paranoia level, in detection-only mode (every phase runs, as
// deepwall with ScoreEvents logs every rule): the reference the targets
// compare with.
type corazaRunner struct {
	waf coraza.WAF
	pl  int
}

// newCorazaRunner loads the CRS into Coraza at paranoia level pl.
func newCorazaRunner(pl int) (*corazaRunner, error) {
	cfg := coraza.NewWAFConfig().WithRootFS(coreruleset.FS).WithDirectives(fmt.Sprintf(`
Include @coraza.conf-recommended
Include @crs-setup.conf.example
SecRuleEngine DetectionOnly
SecRequestBodyAccess On
SecResponseBodyAccess On
SecResponseBodyMimeType text/plain text/html text/xml application/json
SecAction "id:900000,phase:1,pass,nolog,setvar:tx.blocking_paranoia_level=%d,setvar:tx.detection_paranoia_level=%d"
Include @owasp_crs/*.conf
`, pl, pl))
	waf, err := coraza.NewWAF(cfg)
	if err != nil {
		return nil, fmt.Errorf("coraza: %w", err)
	}
	return &corazaRunner{waf: waf, pl: pl}, nil
}

// Name implements runner.
func (c *corazaRunner) Name() string { return "coraza-pl" + strconv.Itoa(c.pl) }

// Close implements runner.
func (c *corazaRunner) Close() error { return nil }

// Run implements runner. A request Go's HTTP parser refuses (some
// encoded_request tests) is reported as matching nothing.
func (c *corazaRunner) Run(req []byte) outcome {
	out := outcome{IDs: map[uint32]bool{}}
	r, err := http.ReadRequest(bufio.NewReader(bytes.NewReader(req)))
	if err != nil {
		return out
	}
	var body bytes.Buffer
	if r.Body != nil {
		_, _ = body.ReadFrom(http.MaxBytesReader(nil, r.Body, maxBody))
	}
	tx := c.waf.NewTransaction()
	defer tx.Close()
	tx.ProcessConnection(testnet.ClientIP.String(), 20000, testnet.ServerIP.String(), 80)
	tx.ProcessURI(r.RequestURI, r.Method, r.Proto)
	for name, vs := range r.Header {
		for _, v := range vs {
			tx.AddRequestHeader(name, v)
		}
	}
	if r.Host != "" {
		tx.AddRequestHeader("Host", r.Host)
		tx.SetServerName(r.Host)
	}
	if it := tx.ProcessRequestHeaders(); it != nil {
		out.Blocked = true
	}
	if _, _, err := tx.WriteRequestBody(body.Bytes()); err == nil {
		if it, _ := tx.ProcessRequestBody(); it != nil {
			out.Blocked = true
		}
	}
	resp, err := http.ReadResponse(bufio.NewReader(bytes.NewReader(response(r.Method, r.RequestURI, body.Bytes()))), r)
	if err == nil {
		for name, vs := range resp.Header {
			for _, v := range vs {
				tx.AddResponseHeader(name, v)
			}
		}
		tx.ProcessResponseHeaders(resp.StatusCode, resp.Proto)
		var rb bytes.Buffer
		_, _ = rb.ReadFrom(resp.Body)
		if tx.IsResponseBodyAccessible() {
			_, _, _ = tx.WriteResponseBody(rb.Bytes())
		}
		_, _ = tx.ProcessResponseBody()
	}
	tx.ProcessLogging()
	for _, m := range tx.MatchedRules() {
		id := m.Rule().ID()
		out.IDs[uint32(id)] = true
		if id == 949110 || id == 959100 {
			out.Blocked = true
		}
	}
	return out
}
