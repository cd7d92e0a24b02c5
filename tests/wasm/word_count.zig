//! A trio_pipe WASM worker in Zig: reads the Task JSON on stdin, writes the result
//! payload JSON on stdout (here: the number of words in payload.text).
const std = @import("std");

pub fn main(init: std.process.Init) !void {
    const io = init.io;
    const gpa = init.gpa;

    var in_buffer: [4096]u8 = undefined;
    var stdin = std.Io.File.stdin().reader(io, &in_buffer);
    const input = try stdin.interface.allocRemaining(gpa, .unlimited);
    defer gpa.free(input);

    const task = try std.json.parseFromSlice(std.json.Value, gpa, input, .{});
    defer task.deinit();
    const payload = task.value.object.get("payload") orelse return error.NoPayload;
    const text = switch (payload) {
        .object => |fields| switch (fields.get("text") orelse return error.NoText) {
            .string => |s| s,
            else => return error.TextIsNotAString,
        },
        else => return error.PayloadIsNotAnObject,
    };

    var words: usize = 0;
    var it = std.mem.tokenizeAny(u8, text, " \t\r\n");
    while (it.next()) |_| words += 1;

    var out_buffer: [4096]u8 = undefined;
    var stdout = std.Io.File.stdout().writer(io, &out_buffer);
    try stdout.interface.print("{{\"words\":{d}}}\n", .{words});
    try stdout.interface.flush();
}
