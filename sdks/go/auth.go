package triopipe

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strings"

	"github.com/coder/websocket"
)

// tokenVariable holds the default of Options.Token.
const tokenVariable = "TRIO_PIPE_TOKEN"

// maxReasonLen is how much of a refusal's body is kept as its reason.
const maxReasonLen = 200

// HandshakeRefusedError is the error of a run whose opening handshake the
// dispatcher answered with HTTP 401 (no token, or one it does not accept) or 403 (a
// valid token that may not connect). RunWebSocket returns it at once, without
// reconnecting: the same credential cannot succeed. Any other status (503 when the
// dispatcher is at its connection limit...) is retried like a failed connection.
type HandshakeRefusedError struct {
	Status int    // the HTTP status
	Reason string // the answer's body on one line, or its status text when it has none
}

func (e *HandshakeRefusedError) Error() string {
	return fmt.Sprintf("the dispatcher refused the connection (HTTP %d): %s", e.Status, e.Reason)
}

// RegistrationRefusedError is the error of a run whose registration the dispatcher
// refused, closing the connection with code 1008 (policy violation) before
// WorkerRegistered: a task type or tag outside the token's scope, a worker id that
// a live connection holds. RunWebSocket returns it at once, without reconnecting. A
// 1008 later in a session is a lost connection, as any other.
type RegistrationRefusedError struct {
	Reason string // the close reason
}

func (e *RegistrationRefusedError) Error() string {
	return "the dispatcher refused the registration: " + e.Reason
}

// fatal reports whether err ends a run instead of a reconnection.
func fatal(err error) bool {
	var refused *HandshakeRefusedError
	var registration *RegistrationRefusedError
	return errors.As(err, &registration) ||
		(errors.As(err, &refused) && (refused.Status == http.StatusUnauthorized || refused.Status == http.StatusForbidden))
}

// checkToken returns why token cannot be sent in an HTTP header, or "" if it can.
// The reason never shows the token.
func checkToken(token string) string {
	for _, c := range []byte(token) {
		if c < 0x21 || c > 0x7e {
			return "Token may hold only printable ASCII characters without spaces"
		}
	}
	return ""
}

// dialOptions are the handshake's options: the token's Authorization header, and
// Options.TLSConfig for wss://.
func (c *config) dialOptions() *websocket.DialOptions {
	opts := &websocket.DialOptions{}
	if c.Token != "" {
		opts.HTTPHeader = http.Header{"Authorization": {"Bearer " + c.Token}}
	}
	if c.TLSConfig != nil {
		transport := http.DefaultTransport.(*http.Transport).Clone()
		transport.TLSClientConfig = c.TLSConfig
		opts.HTTPClient = &http.Client{Transport: transport}
	}
	return opts
}

// dialError says why websocket.Dial failed: a [HandshakeRefusedError] when the
// dispatcher answered with an HTTP error, a TLS failure named as such, else err.
func dialError(err error, resp *http.Response, address string) error {
	if resp != nil && resp.StatusCode != http.StatusSwitchingProtocols {
		return &HandshakeRefusedError{Status: resp.StatusCode, Reason: refusalReason(resp)}
	}
	if why := tlsFailure(err); why != "" {
		return fmt.Errorf("TLS handshake with %s failed: %s: %w", address, why, err)
	}
	return err
}

// refusalReason is a refusal's body on one line (the first 1024 bytes, all that
// websocket.Dial keeps), else its status text.
func refusalReason(resp *http.Response) string {
	var body []byte
	if resp.Body != nil {
		body, _ = io.ReadAll(resp.Body)
	}
	reason := strings.Join(strings.Fields(string(body)), " ")
	if reason == "" {
		reason = http.StatusText(resp.StatusCode)
	}
	if len(reason) > maxReasonLen {
		reason = strings.ToValidUTF8(reason[:maxReasonLen-3], "") + "..."
	}
	return reason
}

// tlsFailure names a failed TLS handshake behind err, or returns "".
func tlsFailure(err error) string {
	var verification *tls.CertificateVerificationError
	var remote *net.OpError
	switch {
	case errors.As(err, &verification):
		return "certificate verify failed: " + verification.Err.Error()
	case errors.As(err, &remote) && remote.Op == "remote error":
		// An alert from the server ("tls: certificate required"), which in TLS 1.3
		// comes after the client's side of the handshake, with the HTTP response.
		why := remote.Err.Error()
		if strings.HasSuffix(why, "certificate required") {
			why += " (the server requires a client certificate)"
		}
		return why
	}
	return ""
}

// LoadTLSConfig returns a TLS configuration for a wss:// dispatcher: caFile (PEM;
// "" for the system's roots) holds the CAs to trust instead of the system's, and
// certFile with keyFile (PEM; "" for none; keyFile "" means the key is in certFile)
// the worker's client certificate, for mutual TLS. A conformance or command-line
// worker passes it TRIO_PIPE_CAFILE, TRIO_PIPE_CERTFILE and TRIO_PIPE_KEYFILE.
func LoadTLSConfig(caFile, certFile, keyFile string) (*tls.Config, error) {
	config := &tls.Config{MinVersion: tls.VersionTLS12}
	if caFile != "" {
		pem, err := os.ReadFile(caFile)
		if err != nil {
			return nil, fmt.Errorf("triopipe: CA file: %w", err)
		}
		config.RootCAs = x509.NewCertPool()
		if !config.RootCAs.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("triopipe: CA file %s holds no PEM certificate", caFile)
		}
	}
	switch {
	case certFile != "":
		if keyFile == "" {
			keyFile = certFile
		}
		certificate, err := tls.LoadX509KeyPair(certFile, keyFile)
		if err != nil {
			return nil, fmt.Errorf("triopipe: client certificate: %w", err)
		}
		config.Certificates = []tls.Certificate{certificate}
	case keyFile != "":
		return nil, errors.New("triopipe: a key file without a certificate file")
	}
	return config, nil
}
