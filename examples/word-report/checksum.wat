;; The "checksum" task as a WASI command in WebAssembly text (wasmtime compiles it).
;;
;; The Task JSON arrives on stdin; this finds the payload's "text" string and writes
;; {"fnv1a": N}: the 32-bit FNV-1a hash of that string's bytes as the JSON carries
;; them (the text's UTF-8 bytes when it holds no escapes). An input of more than
;; 127 KiB, or one with no "text" string, exits with status 1: a failed task.
(module
  (import "wasi_snapshot_preview1" "fd_read"
    (func $fd_read (param i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_write"
    (func $fd_write (param i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "proc_exit" (func $proc_exit (param i32)))
  (memory (export "memory") 2)
  ;; 16: the key searched for; 32: the start of the output; 64: two iovecs;
  ;; 80: a byte count; 88..121: the output, built backwards; 1024..: the input.
  (data (i32.const 16) "\"text\":\"")
  (data (i32.const 32) "{\"fnv1a\":")
  (global $INPUT i32 (i32.const 1024))
  (global $CAPACITY i32 (i32.const 130048))

  (func $read_all (result i32)
    (local $length i32)
    (loop $more
      (i32.store (i32.const 64) (i32.add (global.get $INPUT) (local.get $length)))
      (i32.store (i32.const 68) (i32.sub (global.get $CAPACITY) (local.get $length)))
      (if (call $fd_read (i32.const 0) (i32.const 64) (i32.const 1) (i32.const 80))
        (then (call $proc_exit (i32.const 1))))
      (if (i32.load (i32.const 80))
        (then
          (local.set $length (i32.add (local.get $length) (i32.load (i32.const 80))))
          (if (i32.ge_u (local.get $length) (global.get $CAPACITY))
            (then (call $proc_exit (i32.const 1))))
          (br $more))))
    (local.get $length))

  ;; The offset just after the first "text":" in the input, or exit 1.
  (func $find_text (param $length i32) (result i32)
    (local $at i32)
    (block $missing
      (loop $next
        (br_if $missing (i32.gt_u (i32.add (local.get $at) (i32.const 8)) (local.get $length)))
        (if (i64.eq (i64.load (i32.add (global.get $INPUT) (local.get $at)))
                    (i64.load (i32.const 16)))
          (then (return (i32.add (local.get $at) (i32.const 8)))))
        (local.set $at (i32.add (local.get $at) (i32.const 1)))
        (br $next)))
    (call $proc_exit (i32.const 1))
    (unreachable))

  (func $fnv1a (param $at i32) (param $length i32) (result i32)
    (local $hash i32) (local $byte i32)
    (local.set $hash (i32.const 0x811c9dc5))
    (loop $next
      (if (i32.ge_u (local.get $at) (local.get $length))
        (then (call $proc_exit (i32.const 1))))  ;; the string never ends
      (local.set $byte (i32.load8_u (i32.add (global.get $INPUT) (local.get $at))))
      (if (i32.ne (local.get $byte) (i32.const 0x22))  ;; not the closing quote
        (then
          (local.set $hash
            (i32.mul (i32.xor (local.get $hash) (local.get $byte)) (i32.const 0x01000193)))
          (local.set $at (i32.add (local.get $at) (i32.const 1)))
          (if (i32.eq (local.get $byte) (i32.const 0x5c))  ;; a backslash: take the next
            (then                                         ;; byte as it is
              (local.set $hash
                (i32.mul
                  (i32.xor (local.get $hash)
                    (i32.load8_u (i32.add (global.get $INPUT) (local.get $at))))
                  (i32.const 0x01000193)))
              (local.set $at (i32.add (local.get $at) (i32.const 1)))))
          (br $next))))
    (local.get $hash))

  (func (export "_start")
    (local $length i32) (local $hash i32) (local $at i32)
    (local.set $length (call $read_all))
    (local.set $hash (call $fnv1a (call $find_text (local.get $length)) (local.get $length)))
    ;; The digits, last first, before a closing brace at 120.
    (i32.store8 (i32.const 120) (i32.const 0x7d))
    (local.set $at (i32.const 120))
    (loop $digit
      (local.set $at (i32.sub (local.get $at) (i32.const 1)))
      (i32.store8 (local.get $at)
        (i32.add (i32.const 0x30) (i32.rem_u (local.get $hash) (i32.const 10))))
      (local.set $hash (i32.div_u (local.get $hash) (i32.const 10)))
      (br_if $digit (local.get $hash)))
    ;; The start of the output just before them: one buffer, one write.
    (local.set $at (i32.sub (local.get $at) (i32.const 9)))
    (memory.copy (local.get $at) (i32.const 32) (i32.const 9))
    (i32.store (i32.const 64) (local.get $at))
    (i32.store (i32.const 68) (i32.sub (i32.const 121) (local.get $at)))
    (if (call $fd_write (i32.const 1) (i32.const 64) (i32.const 1) (i32.const 80))
      (then (call $proc_exit (i32.const 1))))))
