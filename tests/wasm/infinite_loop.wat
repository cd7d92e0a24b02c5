;; A runaway: loops forever in wasm code, never calling the host.
(module
  (memory (export "memory") 1)
  (func (export "_start")
    (loop $forever
      (br $forever))))
