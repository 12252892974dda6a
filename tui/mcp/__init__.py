"""``neuron-tui mcp``: the Model Context Protocol server (tui.mcp.server), its tools' answers
(tui.mcp.questions, tui.mcp.exports), their output types (tui.mcp.schemas), its resources and the
board of long work that calls share (tui.mcp.board). No Textual here: it runs where no terminal is."""
