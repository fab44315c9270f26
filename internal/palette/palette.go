// Package palette holds the colors of SMTP dialogues, shared by the server's
// session trace and the client's transcript printer so that a lesson looks
// the same on both sides.
package palette

import "github.com/fatih/color"

// Palette colors the parts of a dialogue. Each Palette has its own
// *color.Color values, enabled or disabled as a whole: the fatih/color
// globals (color.NoColor) are never consulted, so two palettes in one
// process can differ.
type Palette struct {
	Client  *color.Color    // lines the client sends
	Event   *color.Color    // notes that are not protocol lines
	Explain *color.Color    // the explanation after a reply
	Reply   [6]*color.Color // replies by class: index 2 for 2xx … 5 for 5xx
}

// New returns a palette whose colors are on or off.
func New(on bool) *Palette {
	p := &Palette{
		Client:  color.New(color.FgCyan),
		Event:   color.New(color.Faint),
		Explain: color.New(color.FgMagenta),
	}
	p.Reply[2] = color.New(color.FgGreen)
	p.Reply[3] = color.New(color.FgBlue)
	p.Reply[4] = color.New(color.FgYellow)
	p.Reply[5] = color.New(color.FgRed, color.Bold)
	for _, c := range []*color.Color{p.Client, p.Event, p.Explain, p.Reply[2], p.Reply[3], p.Reply[4], p.Reply[5]} {
		if on {
			c.EnableColor()
		} else {
			c.DisableColor()
		}
	}
	return p
}

// ForReply returns the color of a reply with the given code.
func (p *Palette) ForReply(code int) *color.Color {
	return p.Reply[min(max(code/100, 2), 5)]
}
