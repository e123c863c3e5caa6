'use strict';
// Decode Hessian 2 streams with hessian.js (the decoder sofa-rpc-node uses with
// HESSIAN_VERSION=4.0) and print what it read, for test_hessian2_interop.py.
// usage: NODE_PATH=<peers>/node/node_modules node hessianjs_dump.js FILE COUNT [FILE COUNT ...]
// Prints one JSON line per file: {"file": F, "values": [...]} or {"file": F, "error": msg}.
// Dump: {"t":"null"} {"t":"bool","v":b} {"t":"num","v":"String(n)" or "-0"} {"t":"str","v":s}
//   {"t":"bin","hex":h} {"t":"date","ms":n} {"t":"list","id":k,"items":[...]}
//   {"t":"obj","id":k,"entries":[[key,dump],...]} {"t":"ref","id":k} (ids shared per file)
const fs = require('fs');
const hessian = require('hessian.js');

function dumper() {
  const ids = new Map();
  function dump(v) {
    if (v === null || v === undefined) return { t: 'null' };
    if (typeof v === 'boolean') return { t: 'bool', v };
    if (typeof v === 'number') return { t: 'num', v: Object.is(v, -0) ? '-0' : String(v) };
    if (typeof v === 'string') return { t: 'str', v };
    if (Buffer.isBuffer(v)) return { t: 'bin', hex: v.toString('hex') };
    if (v instanceof Date) return { t: 'date', ms: v.getTime() };
    if (ids.has(v)) return { t: 'ref', id: ids.get(v) };
    const id = ids.size;
    ids.set(v, id);
    if (Array.isArray(v)) return { t: 'list', id, items: v.map(dump) };
    if (v instanceof Map) return { t: 'obj', id, entries: [...v].map(([k, x]) => [String(k), dump(x)]) };
    return { t: 'obj', id, entries: Object.keys(v).map((k) => [k, dump(v[k])]) };
  }
  return dump;
}

const args = process.argv.slice(2);
for (let i = 0; i < args.length; i += 2) {
  const file = args[i];
  const count = Number(args[i + 1]);
  try {
    const decoder = new hessian.DecoderV2(fs.readFileSync(file));
    const dump = dumper();
    const values = [];
    for (let n = 0; n < count; n++) values.push(dump(decoder.read()));
    console.log(JSON.stringify({ file, values }));
  } catch (e) {
    console.log(JSON.stringify({ file, error: String(e && e.message).slice(0, 300) }));
  }
}
