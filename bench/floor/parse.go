package floor

import (
	"bufio"
	"bytes"
	"net/http"
	"strconv"

	"github.com/rollbridge/rollbridge-go/internal/h1"
)

// parser does, per message, the HTTP work an event-loop request path
// would do at the least: both heads parsed by internal/h1 (the proxy's
// strict parser), hop-by-hop fields dropped, X-Forwarded-* added, both
// heads written anew. It is what Loop adds with ParseHeads, so the floor
// section can show what real parsing costs on top of the loop.
type parser struct {
	rd      bytes.Reader
	br      *bufio.Reader
	out     []byte
	methods []string // of the requests sent and not yet answered, oldest first
}

func newParser() *parser {
	p := &parser{}
	p.br = bufio.NewReaderSize(&p.rd, 4096)
	return p
}

// hopByHopKeys are the fields a proxy does not pass on (RFC 9110 7.6.1).
var hopByHopKeys = map[string]bool{
	"Connection": true, "Keep-Alive": true, "Proxy-Connection": true, "Te": true,
	"Trailer": true, "Transfer-Encoding": true, "Upgrade": true,
}

func (p *parser) reset(head []byte) {
	p.rd.Reset(head)
	p.br.Reset(&p.rd)
}

// request parses a complete request head and returns the head to send to
// the app, or an error for anything the instrument does not forward.
func (p *parser) request(head []byte, clientIP string) ([]byte, error) {
	p.reset(head)
	req, err := h1.ReadRequest(p.br, h1.Limits{MaxHeaderBytes: maxHead})
	if err != nil {
		return nil, err
	}
	if req.Body != http.NoBody {
		return nil, errFrame
	}
	p.methods = append(p.methods, req.Method)
	b := append(p.out[:0], req.Method...)
	b = append(b, ' ')
	b = append(b, req.RequestURI...)
	b = append(b, " HTTP/1.1\r\nHost: "...)
	b = append(b, req.Host...)
	b = append(b, "\r\n"...)
	for k, vv := range req.Header {
		if hopByHopKeys[k] || k == "X-Forwarded-For" || k == "X-Forwarded-Proto" || k == "X-Forwarded-Host" {
			continue
		}
		for _, v := range vv {
			b = appendField(b, k, v)
		}
	}
	b = appendField(b, "X-Forwarded-For", clientIP)
	b = appendField(b, "X-Forwarded-Proto", "http")
	b = appendField(b, "X-Forwarded-Host", req.Host)
	b = append(b, "\r\n"...)
	p.out = b
	return b, nil
}

// answerHead parses a complete answer head and returns the head to send
// to the client and the body's length; answered then retires its request.
func (p *parser) answerHead(head []byte) ([]byte, int, error) {
	if len(p.methods) == 0 {
		return nil, 0, errFrame // an answer nobody asked for
	}
	method := p.methods[0]
	p.reset(head)
	res, err := h1.ReadResponse(p.br, method, h1.Limits{MaxHeaderBytes: maxHead}, nil)
	if err != nil {
		return nil, 0, err
	}
	if res.StatusCode < 200 || (res.ContentLength < 0 && method != http.MethodHead) {
		return nil, 0, errFrame // interim answers and unframed bodies are not handled
	}
	n := max(res.ContentLength, 0)
	if method == http.MethodHead {
		n = 0
	}
	b := append(p.out[:0], "HTTP/1.1 "...)
	b = strconv.AppendInt(b, int64(res.StatusCode), 10)
	b = append(b, ' ')
	b = append(b, http.StatusText(res.StatusCode)...)
	b = append(b, "\r\n"...)
	for k, vv := range res.Header {
		if hopByHopKeys[k] {
			continue
		}
		for _, v := range vv {
			b = appendField(b, k, v)
		}
	}
	b = append(b, "\r\n"...)
	p.out = b
	return b, int(n), nil
}

func (p *parser) answered(out []byte) {
	p.out = out[:0]
	p.methods = p.methods[:copy(p.methods, p.methods[1:])]
}

func appendField(b []byte, k, v string) []byte {
	b = append(b, k...)
	b = append(b, ": "...)
	b = append(b, v...)
	return append(b, "\r\n"...)
}
