// Hypercore's catch-up over TCP on 127.0.0.1, for tools/bench_hypercore.py.
//
//   node catchup.js serve DIR BLOCKS SIZE   build a writer core of BLOCKS blocks of SIZE bytes in DIR (once),
//                                           listen on 127.0.0.1:0, print {"key","port","length"}, serve until
//                                           stdin closes
//   node catchup.js read DIR KEY PORT       a new reader core in DIR replicates every block from the writer,
//                                           then prints {"held","seconds"} (seconds from this process's start)
//
// Every line on stdout is one JSON object; the bench times the reader from spawning it to its line.
'use strict'

const net = require('net')
const crypto = require('crypto')
const { performance } = require('perf_hooks')
const Hypercore = require('hypercore')

const BATCH = 1000

function print (doc) {
  process.stdout.write(JSON.stringify(doc) + '\n')
}

async function serve (dir, blocks, size) {
  const core = new Hypercore(dir)
  await core.ready()
  while (core.length < blocks) {
    const batch = []
    for (let i = core.length; i < Math.min(blocks, core.length + BATCH); i++) batch.push(crypto.randomBytes(size))
    await core.append(batch)
  }
  const server = net.createServer(socket => {
    const stream = core.replicate(false)
    socket.pipe(stream).pipe(socket)
    stream.on('error', () => socket.destroy())
    socket.on('error', () => stream.destroy())
  })
  server.listen(0, '127.0.0.1', () => {
    print({ key: core.key.toString('hex'), port: server.address().port, length: core.length })
  })
  process.stdin.resume()
  process.stdin.on('end', async () => {
    server.close()
    await core.close()
    process.exit(0)
  })
}

async function read (dir, key, port) {
  const core = new Hypercore(dir, Buffer.from(key, 'hex'))
  await core.ready()
  const socket = net.connect(port, '127.0.0.1')
  const stream = core.replicate(true)
  socket.pipe(stream).pipe(socket)
  await core.update({ wait: true })
  await core.download({ start: 0, end: core.length }).done()
  const held = core.contiguousLength
  print({ held, seconds: performance.now() / 1000 })
  socket.destroy()
  await core.close()
  process.exit(0)
}

const [mode, ...args] = process.argv.slice(2)
const main = mode === 'serve'
  ? serve(args[0], Number(args[1]), Number(args[2]))
  : mode === 'read' ? read(args[0], args[1], Number(args[2])) : Promise.reject(new Error(`unknown mode ${mode}`))
main.catch(err => {
  process.stderr.write(`catchup.js: ${err.message}\n`)
  process.exit(1)
})
