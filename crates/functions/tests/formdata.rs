//! FormData and File, WPT-style, and form bodies: serialising multipart and
//! urlencoded bodies, and parsing them with `formData()`.

mod common;
use common::*;

#[tokio::test]
async fn form_data_methods() {
    check(r#"
      const fd = new FormData();
      fd.append('a', '1'); fd.append('b', 2); fd.append('a', '3');
      eq(fd.get('a'), '1', 'get returns the first');
      eq(fd.getAll('a'), ['1', '3'], 'getAll');
      eq(fd.get('zz'), null, 'missing is null');
      eq(fd.getAll('zz'), [], 'missing getAll');
      ok(fd.has('b') && !fd.has('c'), 'has');
      eq(fd.get('b'), '2', 'values are strings');
      fd.set('a', 'x');
      eq([...fd], [['a', 'x'], ['b', '2']], 'set replaces the first and drops the rest, in place');
      fd.delete('a');
      eq([...fd.keys()], ['b'], 'delete');
      fd.append('f', new Blob(['hey'], { type: 'text/plain' }));
      const f = fd.get('f');
      ok(f instanceof File && f instanceof Blob, 'a Blob becomes a File');
      eq([f.name, f.type, f.size], ['blob', 'text/plain', 3], 'default file name');
      eq(await f.text(), 'hey', 'file content');
      fd.set('g', new File(['x'], 'orig.txt'), 'renamed.txt');
      eq(fd.get('g').name, 'renamed.txt', 'filename argument');
      fd.append('h', new File(['y'], 'keep.bin', { type: 'application/x-k', lastModified: 42 }));
      eq([fd.get('h').name, fd.get('h').type, fd.get('h').lastModified], ['keep.bin', 'application/x-k', 42], 'File kept as is');
      eq([...fd.values()].length, 4, 'values');
      const seen = []; fd.forEach((v, k) => seen.push(k)); eq(seen, ['b', 'f', 'g', 'h'], 'forEach');
      throws(() => fd.append('only-name'), 'TypeError', 'append with one argument');
      throws(() => fd.append('a', 'b', 'c.txt'), 'TypeError', 'filename with a string value');
      throws(() => new FormData({}), 'TypeError', 'form element');
      throws(() => new File(['x']), 'TypeError', 'File needs a name');
      eq(Object.prototype.toString.call(fd), '[object FormData]', 'toStringTag');
    "#).await;
}

#[tokio::test]
async fn form_bodies() {
    check(r#"
      const fd = new FormData();
      fd.append('name', 'Ada "L"\nL');
      fd.append('file', new Blob([new Uint8Array([0, 1, 2, 255])], { type: 'application/octet-stream' }), 'da"ta.bin');
      const req = new Request('https://a.example/', { method: 'POST', body: fd });
      const ct = req.headers.get('content-type');
      ok(/^multipart\/form-data; boundary=-+LedgeFormBoundary[0-9a-f]+$/.test(ct), 'multipart content type: ' + ct);
      const raw = await req.clone().text();
      const boundary = ct.split('boundary=')[1];
      ok(raw.startsWith('--' + boundary + '\r\nContent-Disposition: form-data; name="name"\r\n\r\nAda "L"\r\nL\r\n'), 'text part, newlines normalised');
      ok(raw.includes('name="file"; filename="da%22ta.bin"\r\nContent-Type: application/octet-stream\r\n\r\n'), 'file part headers');
      ok(raw.endsWith('--' + boundary + '--\r\n'), 'closing delimiter');
      const back = await req.formData();
      eq(back.get('name'), 'Ada "L"\r\nL', 'round trip text');
      const file = back.get('file');
      eq([file.name, file.type, [...await file.bytes()]], ['da"ta.bin', 'application/octet-stream', [0, 1, 2, 255]], 'round trip file');

      const urlenc = new Response('a=1&b=x+y&a=%C3%A9', { headers: { 'content-type': 'application/x-www-form-urlencoded; charset=UTF-8' } });
      const u = await urlenc.formData();
      eq([...u], [['a', '1'], ['b', 'x y'], ['a', 'é']], 'urlencoded parse');
      const sp = new Request('https://a.example/', { method: 'POST', body: new URLSearchParams({ q: 'a b', r: '&' }) });
      eq(sp.headers.get('content-type'), 'application/x-www-form-urlencoded;charset=UTF-8', 'URLSearchParams content type');
      eq([...await sp.formData()], [['q', 'a b'], ['r', '&']], 'URLSearchParams body round trip');

      const manual = '--XX\r\nContent-Disposition: form-data; name="k"\r\n\r\nv\r\n--XX\r\nContent-Disposition: form-data; name="up"; filename="u.txt"\r\n\r\ncontent\r\n--XX--\r\n';
      const m = await new Response(manual, { headers: { 'content-type': 'multipart/form-data; boundary="XX"' } }).formData();
      eq(m.get('k'), 'v', 'hand-written multipart');
      eq([m.get('up').name, m.get('up').type, await m.get('up').text()], ['u.txt', 'text/plain', 'content'], 'file part without a type');
      await rejects(new Response('x').formData(), 'TypeError', 'text/plain is not form data');
      await rejects(new Response('junk', { headers: { 'content-type': 'multipart/form-data; boundary=b' } }).formData(), 'TypeError', 'malformed multipart');
      await rejects(new Response('--b--', { headers: { 'content-type': 'multipart/form-data' } }).formData(), 'TypeError', 'missing boundary');
      const streamed = new Response(ReadableStream.from([bytes('a=1')]), { headers: { 'content-type': 'application/x-www-form-urlencoded' } });
      eq((await streamed.formData()).get('a'), '1', 'formData() of a stream body');
      const used = new Response('a=1', { headers: { 'content-type': 'application/x-www-form-urlencoded' } });
      await used.text();
      await rejects(used.formData(), 'TypeError', 'used body');
      eq((await new Response(new FormData()).formData()).has('x'), false, 'empty FormData round trip');
    "#).await;
}

#[tokio::test]
async fn form_data_over_fetch() {
    let src = r#"export default async () => {
      const fd = new FormData();
      fd.append('field', 'value');
      const r = await fetch('https://o.example/upload', { method: 'POST', body: fd });
      return new Response(await r.text());
    }"#;
    let inv = run(&engine(), src, &request("https://site.example/")).await;
    let text = body(&inv);
    assert!(
        text.starts_with("fetch POST https://o.example/upload body=------LedgeFormBoundary"),
        "{text}"
    );
    assert!(
        text.contains("Content-Disposition: form-data; name=\"field\"\r\n\r\nvalue\r\n"),
        "{text}"
    );
}
