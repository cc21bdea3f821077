package control

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
)

// EncodeResult returns the final success line for r exactly as the server
// sends it, without the newline: {"status":"success"} followed by r's
// fields in their declared order. rollbridgectl prints results in this
// shape, so its output and the socket's bytes cannot drift apart. As with
// JSON.stringify in the Node original, <, > and & are written as they are,
// not escaped for HTML: a command such as "a && b" reads the same in
// status as in the config.
func EncodeResult[R Result](r R) ([]byte, error) {
	body, err := marshal(r)
	if err != nil {
		return nil, fmt.Errorf("encode %T: %w", r, err)
	}
	// Every Result is a struct, so body is a JSON object: splice its fields
	// in after the status.
	var b bytes.Buffer
	b.WriteString(`{"status":"success"`)
	if inner := bytes.TrimSpace(body[1 : len(body)-1]); len(inner) > 0 {
		b.WriteByte(',')
		b.Write(inner)
	}
	b.WriteByte('}')
	return b.Bytes(), nil
}

// Progress is an intermediate line of a long command (deploy, rollback),
// sent only to a request that asked for it (Request.Progress).
type Progress struct {
	Message string         `json:"message"`
	Data    map[string]any `json:"data,omitempty"`
}

// line is every line a server writes, for the client to read the status
// first and then the fields of that kind of line.
type line struct {
	Status  string         `json:"status"`
	Error   string         `json:"error"`
	Code    string         `json:"code"`
	Message string         `json:"message"`
	Data    map[string]any `json:"data"`
}

// errorLine is the original's {"error","status":"error"}, in its key order,
// plus our code (a client of the original ignores it).
type errorLine struct {
	Error  string `json:"error"`
	Status string `json:"status"`
	Code   string `json:"code"`
}

type progressLine struct {
	Status  string         `json:"status"`
	Message string         `json:"message"`
	Data    map[string]any `json:"data,omitempty"`
}

func encodeError(e *Error) []byte {
	b, _ := marshal(errorLine{Error: e.Message, Status: "error", Code: e.Code}) // strings only: cannot fail
	return append(b, '\n')
}

func encodeProgress(p Progress) ([]byte, error) {
	b, err := marshal(progressLine{Status: "progress", Message: p.Message, Data: p.Data})
	if err != nil {
		return nil, fmt.Errorf("encode progress %q: %w", p.Message, err)
	}
	return append(b, '\n'), nil
}

// marshal is json.Marshal without the escaping of <, > and & for HTML,
// which the Node original does not do either. Every MarshalJSON of this
// package uses it too: the encoder leaves a Marshaler's output as it is.
func marshal(v any) ([]byte, error) {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return nil, err
	}
	return bytes.TrimSuffix(b.Bytes(), []byte("\n")), nil
}

var errLineTooLong = Errorf(CodeBadRequest, "request line longer than %d bytes", MaxLineBytes)

// readLine reads one line of at most MaxLineBytes, without the newline.
// It returns errLineTooLong (after discarding the rest of the line) when the
// limit is exceeded, and io.EOF at a clean end of input.
func readLine(r *bufio.Reader) ([]byte, error) {
	var buf []byte
	for {
		chunk, err := r.ReadSlice('\n')
		if len(buf)+len(chunk) > MaxLineBytes+1 {
			for errors.Is(err, bufio.ErrBufferFull) {
				_, err = r.ReadSlice('\n')
			}
			return nil, errLineTooLong
		}
		buf = append(buf, chunk...)
		switch {
		case err == nil:
			return bytes.TrimRight(buf, "\r\n"), nil
		case errors.Is(err, bufio.ErrBufferFull):
			continue
		case errors.Is(err, io.EOF) && len(buf) > 0:
			return buf, nil
		default:
			return nil, err
		}
	}
}
