package triopipe_test

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"log"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/coder/websocket"

	triopipe "github.com/trio-pipe/trio-pipe/sdks/go"
	"github.com/trio-pipe/trio-pipe/sdks/go/protocol"
)

const token = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ3b3JrZXIifQ.c2lnbmF0dXJl"

// tlsFile is the path of one of the shared test certificates (spec/tls).
func tlsFile(name string) string {
	return filepath.Join("..", "..", "spec", "tls", name)
}

// answer is how authDispatcher answers the n-th handshake (from 0): an HTTP
// status with a body to refuse it, or status 0 to accept it.
type answer func(n int) (status int, body string)

func accepting(int) (int, string) { return 0, "" }

// authDispatcher is a dispatcher that checks credentials: it records every
// handshake's request and answers it as the test says.
type authDispatcher struct {
	*wsDispatcher
	mu       sync.Mutex
	requests []*http.Request
}

func newAuthDispatcher(t *testing.T, answer answer, tlsConfig *tls.Config) *authDispatcher {
	d := &authDispatcher{wsDispatcher: &wsDispatcher{t: t, conns: make(chan *websocket.Conn, 10)}}
	server := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		d.mu.Lock()
		d.requests = append(d.requests, r)
		n := len(d.requests) - 1
		d.mu.Unlock()
		if status, body := answer(n); status != 0 {
			http.Error(w, body, status)
			return
		}
		if conn, err := websocket.Accept(w, r, nil); err == nil {
			d.conns <- conn
		}
	}))
	server.Config.ErrorLog = log.New(io.Discard, "", 0) // refused TLS handshakes
	if tlsConfig == nil {
		server.Start()
		d.url = "ws" + strings.TrimPrefix(server.URL, "http") + "/workers"
	} else {
		server.TLS = tlsConfig
		server.StartTLS()
		d.url = "wss" + strings.TrimPrefix(server.URL, "https") + "/workers"
	}
	t.Cleanup(func() {
		server.Close()
		close(d.conns)
		for conn := range d.conns {
			_ = conn.CloseNow()
		}
	})
	return d
}

// request returns the i-th handshake's request.
func (d *authDispatcher) request(i int) *http.Request {
	d.mu.Lock()
	defer d.mu.Unlock()
	if i >= len(d.requests) {
		d.t.Fatalf("%d handshakes, want at least %d", len(d.requests), i+1)
	}
	return d.requests[i]
}

func (d *authDispatcher) handshakes() int {
	d.mu.Lock()
	defer d.mu.Unlock()
	return len(d.requests)
}

// registerThenShutDown serves one connection: registers the worker, shuts it down.
func (d *authDispatcher) registerThenShutDown() {
	p := d.accept()
	p.register()
	p.send(protocol.Shutdown{Graceful: true})
}

// serverTLS is the dispatcher's TLS configuration, with the shared certificate for
// 127.0.0.1; requireClient asks for a client certificate signed by the test CA.
func serverTLS(t *testing.T, requireClient bool) *tls.Config {
	certificate, err := tls.LoadX509KeyPair(tlsFile("server.pem"), tlsFile("server.key"))
	if err != nil {
		t.Fatal(err)
	}
	config := &tls.Config{Certificates: []tls.Certificate{certificate}}
	if requireClient {
		ca, err := os.ReadFile(tlsFile("ca.pem"))
		if err != nil {
			t.Fatal(err)
		}
		config.ClientCAs = x509.NewCertPool()
		config.ClientCAs.AppendCertsFromPEM(ca)
		config.ClientAuth = tls.RequireAndVerifyClientCert
	}
	return config
}

func TestTheTokenGoesInTheAuthorizationHeaderNeverTheURL(t *testing.T) {
	d := newAuthDispatcher(t, accepting, nil)
	w, _ := newWorker(triopipe.Options{Token: token})
	ended := runWS(t, w, d.url)
	d.registerThenShutDown()
	if err := waitEnded(t, ended); err != nil {
		t.Fatal(err)
	}
	r := d.request(0)
	if got := r.Header.Get("Authorization"); got != "Bearer "+token {
		t.Errorf("Authorization %q", got)
	}
	if r.URL.String() != "/workers" {
		t.Errorf("request URL %q", r.URL)
	}
}

func TestTheTokenComesFromTheEnvironmentUnlessGiven(t *testing.T) {
	t.Setenv("TRIO_PIPE_TOKEN", "from-the-environment")
	d := newAuthDispatcher(t, accepting, nil)
	for i, opts := range []triopipe.Options{{}, {Token: "from-the-option"}} {
		w, _ := newWorker(opts)
		ended := runWS(t, w, d.url)
		d.registerThenShutDown()
		if err := waitEnded(t, ended); err != nil {
			t.Fatal(err)
		}
		want := []string{"Bearer from-the-environment", "Bearer from-the-option"}[i]
		if got := d.request(i).Header.Get("Authorization"); got != want {
			t.Errorf("Authorization %q, want %q", got, want)
		}
	}
}

func TestNoTokenNoHeader(t *testing.T) {
	t.Setenv("TRIO_PIPE_TOKEN", "")
	d := newAuthDispatcher(t, accepting, nil)
	w, _ := newWorker(triopipe.Options{})
	ended := runWS(t, w, d.url)
	d.registerThenShutDown()
	if err := waitEnded(t, ended); err != nil {
		t.Fatal(err)
	}
	if _, sent := d.request(0).Header["Authorization"]; sent {
		t.Error("an Authorization header was sent")
	}
}

func TestATokenThatCannotBeAHeaderIsInvalid(t *testing.T) {
	for _, bad := range []string{"two words", "line\nbreak", "café"} {
		w, _ := newWorker(triopipe.Options{Token: bad})
		err := waitEnded(t, runWS(t, w, "ws://127.0.0.1:1"))
		if !errors.Is(err, triopipe.ErrInvalidOptions) || strings.Contains(err.Error(), bad) {
			t.Errorf("token %q: RunWebSocket returned %v", bad, err)
		}
	}
}

func TestTheTokenIsNeverLogged(t *testing.T) {
	var logs bytes.Buffer
	logger := slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	d := newAuthDispatcher(t, func(n int) (int, string) {
		if n == 0 {
			return 0, ""
		}
		return http.StatusUnauthorized, "token revoked"
	}, nil)
	w, _ := newWorker(triopipe.Options{Token: token, Logger: logger})
	ended := runWS(t, w, d.url)
	d.registerThenShutDown()
	if err := waitEnded(t, ended); err != nil {
		t.Fatal(err)
	}
	w, _ = newWorker(triopipe.Options{Token: token, Logger: logger})
	err := waitEnded(t, runWS(t, w, d.url))
	if err == nil || strings.Contains(err.Error(), token) {
		t.Errorf("RunWebSocket returned %v", err)
	}
	if logs.Len() == 0 || strings.Contains(logs.String(), token) {
		t.Errorf("the log:\n%s", logs.String())
	}
}

func TestARefusedHandshakeEndsTheRunWithoutReconnecting(t *testing.T) {
	for _, c := range []struct {
		status int
		reason string
	}{{401, "token expired"}, {403, "worker id not allowed"}} {
		d := newAuthDispatcher(t, func(int) (int, string) { return c.status, c.reason }, nil)
		w, _ := newWorker(triopipe.Options{Token: token, BackoffInitial: time.Millisecond})
		err := waitEnded(t, runWS(t, w, d.url)) // GiveUpAfter 0: it would reconnect forever
		var refused *triopipe.HandshakeRefusedError
		if !errors.As(err, &refused) || refused.Status != c.status || refused.Reason != c.reason {
			t.Fatalf("RunWebSocket returned %v", err)
		}
		if want := fmt.Sprintf("the dispatcher refused the connection (HTTP %d): %s", c.status, c.reason); !strings.HasSuffix(err.Error(), want) {
			t.Errorf("message %q, want it to end with %q", err, want)
		}
		if n := d.handshakes(); n != 1 {
			t.Errorf("%d handshakes, want 1", n)
		}
	}
}

func TestAnotherRefusalIsRetried(t *testing.T) {
	var logs bytes.Buffer
	d := newAuthDispatcher(t, func(n int) (int, string) {
		if n < 2 {
			return http.StatusServiceUnavailable, "at the connection limit"
		}
		return 0, ""
	}, nil)
	w, _ := newWorker(triopipe.Options{Token: token, BackoffInitial: time.Millisecond, Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	ended := runWS(t, w, d.url)
	d.registerThenShutDown()
	if err := waitEnded(t, ended); err != nil {
		t.Fatal(err)
	}
	if n := d.handshakes(); n != 3 {
		t.Errorf("%d handshakes, want 3", n)
	}
	if !strings.Contains(logs.String(), "the dispatcher refused the connection (HTTP 503): at the connection limit") {
		t.Errorf("the log:\n%s", logs.String())
	}
}

func TestPolicyViolationBeforeRegisteredEndsTheRun(t *testing.T) {
	d := newAuthDispatcher(t, accepting, nil)
	w, _ := newWorker(triopipe.Options{BackoffInitial: time.Millisecond})
	ended := runWS(t, w, d.url)
	p := d.accept()
	if _, ok := p.next().(protocol.WorkerRegister); !ok {
		t.Fatal("no WorkerRegister")
	}
	_ = p.conn.Close(websocket.StatusPolicyViolation, "task type 'echo' is outside the token's scope")
	err := waitEnded(t, ended)
	var refused *triopipe.RegistrationRefusedError
	if !errors.As(err, &refused) || refused.Reason != "task type 'echo' is outside the token's scope" {
		t.Fatalf("RunWebSocket returned %v", err)
	}
	if !strings.HasSuffix(err.Error(), "the dispatcher refused the registration: task type 'echo' is outside the token's scope") {
		t.Errorf("message %q", err)
	}
	if n := d.handshakes(); n != 1 {
		t.Errorf("%d handshakes, want 1", n)
	}
}

func TestPolicyViolationOnceRegisteredIsALostConnection(t *testing.T) {
	d := newAuthDispatcher(t, accepting, nil)
	w, _ := newWorker(triopipe.Options{BackoffInitial: time.Millisecond})
	ended := runWS(t, w, d.url)
	p := d.accept()
	p.register()
	_ = p.conn.Close(websocket.StatusPolicyViolation, "invalid TaskResult")
	d.registerThenShutDown()
	if err := waitEnded(t, ended); err != nil {
		t.Fatal(err)
	}
}

func TestMutualTLSAcceptsTheWorkerWithItsCertificate(t *testing.T) {
	d := newAuthDispatcher(t, accepting, serverTLS(t, true))
	config, err := triopipe.LoadTLSConfig(tlsFile("ca.pem"), tlsFile("client.pem"), tlsFile("client.key"))
	if err != nil {
		t.Fatal(err)
	}
	w, _ := newWorker(triopipe.Options{TLSConfig: config, Token: token})
	ended := runWS(t, w, d.url)
	d.registerThenShutDown()
	if err := waitEnded(t, ended); err != nil {
		t.Fatal(err)
	}
	if got := d.request(0).Header.Get("Authorization"); got != "Bearer "+token {
		t.Errorf("Authorization %q", got)
	}
}

func TestTLSFailuresAreNamedAndRetried(t *testing.T) {
	withCA, err := triopipe.LoadTLSConfig(tlsFile("ca.pem"), "", "")
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name          string
		requireClient bool
		config        *tls.Config
		why           string
	}{
		{"no client certificate", true, withCA, "tls: certificate required (the server requires a client certificate)"},
		{"an untrusted server", false, nil, "certificate verify failed: x509: certificate signed by unknown authority"},
	} {
		t.Run(c.name, func(t *testing.T) {
			d := newAuthDispatcher(t, accepting, serverTLS(t, c.requireClient))
			w, _ := newWorker(triopipe.Options{TLSConfig: c.config, BackoffInitial: time.Millisecond, GiveUpAfter: 2})
			err := waitEnded(t, runWS(t, w, d.url))
			address := strings.TrimSuffix(strings.TrimPrefix(d.url, "wss://"), "/workers")
			want := "gave up after 2 failed connections: TLS handshake with " + address + " failed: " + c.why
			if err == nil || !strings.Contains(err.Error(), want) {
				t.Errorf("RunWebSocket returned %v, want %q", err, want)
			}
		})
	}
}

func TestTLSConfigIsForWSSOnly(t *testing.T) {
	w, _ := newWorker(triopipe.Options{TLSConfig: &tls.Config{}})
	err := waitEnded(t, runWS(t, w, "ws://127.0.0.1:1"))
	if !errors.Is(err, triopipe.ErrInvalidOptions) {
		t.Errorf("RunWebSocket returned %v", err)
	}
}

func TestLoadTLSConfig(t *testing.T) {
	config, err := triopipe.LoadTLSConfig("", tlsFile("client.pem"), tlsFile("client.key"))
	if err != nil || config.RootCAs != nil || len(config.Certificates) != 1 {
		t.Errorf("LoadTLSConfig: %+v, %v", config, err)
	}
	for _, files := range [][3]string{
		{"/nonexistent/ca.pem", "", ""},
		{tlsFile("client.key"), "", ""}, // no certificate in it
		{"", tlsFile("client.pem"), ""}, // no key in it
		{"", "", tlsFile("client.key")}, // a key without a certificate
	} {
		if _, err := triopipe.LoadTLSConfig(files[0], files[1], files[2]); err == nil {
			t.Errorf("LoadTLSConfig%q: no error", files)
		}
	}
}
