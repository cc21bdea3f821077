package systemd

import (
	"encoding/json"
	"fmt"
	"sort"
	"strings"

	"github.com/coreos/go-systemd/v22/journal"
	"github.com/rollbridge/rollbridge-go/pkg/events"
)

// StdoutIsJournal reports whether our stdout or stderr is connected to
// journald (JOURNAL_STREAM matches), i.e. we run as a systemd service and
// native entries are better than JSON lines.
func StdoutIsJournal() bool {
	if ok, err := journal.StdoutIsJournalStream(); err == nil && ok {
		return journal.Enabled()
	}
	if ok, err := journal.StderrIsJournalStream(); err == nil && ok {
		return journal.Enabled()
	}
	return false
}

// JournalOutput writes each event as a native journal entry: MESSAGE is
// the event name with its data, ROLLBRIDGE_EVENT the name, and every data
// key becomes a ROLLBRIDGE_<KEY> field (releaseId -> ROLLBRIDGE_RELEASE_ID).
func JournalOutput(application string) events.Output {
	return events.OutputFunc(func(e events.Event) {
		// The priority is decided beside the event's name (events.Name.Priority).
		pri := journal.Priority(e.Message.Priority())
		_ = journal.Send(string(e.Message)+formatData(e.Data), pri, eventFields(application, e)) // losing a log entry must not stop the daemon
	})
}

// eventFields are the journal fields of event e (see JournalOutput).
func eventFields(application string, e events.Event) map[string]string {
	vars := map[string]string{
		"SYSLOG_IDENTIFIER":      "rollbridged",
		"ROLLBRIDGE_APPLICATION": application,
		"ROLLBRIDGE_EVENT":       string(e.Message),
	}
	for k, v := range e.Data {
		vars["ROLLBRIDGE_"+fieldName(k)] = fieldValue(v)
	}
	// The base id is what people filter by; the instance id is kept apart.
	// (The data's "processId" is the instance id, as in the spec.)
	if base, ok := e.Data[events.KeyBaseID]; ok {
		vars["ROLLBRIDGE_PROCESS_ID"] = fieldValue(base)
		if id, ok := e.Data[events.KeyID]; ok {
			vars["ROLLBRIDGE_INSTANCE_ID"] = fieldValue(id)
		} else if id, ok := e.Data[events.KeyProcessID]; ok {
			vars["ROLLBRIDGE_INSTANCE_ID"] = fieldValue(id)
		}
	} else if id, ok := e.Data[events.KeyID]; ok {
		vars["ROLLBRIDGE_PROCESS_ID"] = fieldValue(id)
	}
	if b, err := json.Marshal(e.Data); err == nil {
		vars["ROLLBRIDGE_DATA"] = string(b)
	}
	return vars
}

// AccessEntry writes one access log entry (pkg/accesslog: its Message and
// Fields) as a native journal entry at info priority, identified as
// rollbridged of application.
func AccessEntry(application, message string, fields map[string]string) {
	fields["SYSLOG_IDENTIFIER"] = "rollbridged"
	fields["ROLLBRIDGE_APPLICATION"] = application
	_ = journal.Send(message, journal.PriInfo, fields) // see JournalOutput
}

// ProcessLine forwards one line of a managed process's output. fields
// carries id (instance), baseId (base), releaseId and policy.
func ProcessLine(application string, fields map[string]any, stream, line string, pid int) {
	pri := journal.PriInfo
	if stream == "stderr" {
		pri = journal.PriWarning
	}
	vars := map[string]string{
		"ROLLBRIDGE_APPLICATION": application,
		"ROLLBRIDGE_STREAM":      stream,
		"SYSLOG_IDENTIFIER":      fieldValue(fields["id"]),
	}
	if pid > 0 {
		vars["SYSLOG_PID"] = fmt.Sprint(pid)
	}
	for k, v := range fields {
		vars["ROLLBRIDGE_"+fieldName(k)] = fieldValue(v)
	}
	if base, ok := fields[events.KeyBaseID]; ok {
		vars["ROLLBRIDGE_PROCESS_ID"] = fieldValue(base)
		vars["ROLLBRIDGE_INSTANCE_ID"] = fieldValue(fields[events.KeyID])
	}
	_ = journal.Send(line, pri, vars) // see JournalOutput
}

// fieldName turns a camelCase key into a journal field name: upper case
// letters, digits and underscores, never starting with an underscore.
func fieldName(k string) string {
	var b strings.Builder
	for i, r := range k {
		switch {
		case r >= 'A' && r <= 'Z':
			if i > 0 {
				b.WriteByte('_')
			}
			b.WriteRune(r)
		case r >= 'a' && r <= 'z':
			b.WriteRune(r - 'a' + 'A')
		case r >= '0' && r <= '9':
			b.WriteRune(r)
		default:
			b.WriteByte('_')
		}
	}
	return strings.TrimLeft(b.String(), "_")
}

func fieldValue(v any) string {
	switch x := v.(type) {
	case nil:
		return ""
	case string:
		return x
	case fmt.Stringer:
		return x.String()
	}
	b, err := json.Marshal(v)
	if err != nil {
		return fmt.Sprint(v)
	}
	return string(b)
}

func formatData(data map[string]any) string {
	keys := make([]string, 0, len(data))
	for k := range data {
		if data[k] != nil {
			keys = append(keys, k)
		}
	}
	sort.Strings(keys)
	var b strings.Builder
	for _, k := range keys {
		fmt.Fprintf(&b, " %s=%s", k, fieldValue(data[k]))
	}
	return b.String()
}
