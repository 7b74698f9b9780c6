/**
 * The TOTP enrolment's otpauth:// URI as a QR code for an authenticator app's camera: an
 * SVG made in the browser by the `qrcode` library, shown as a data: image (the console's
 * CSP allows `img-src data:`). The library is loaded only when an enrolment shows it, so
 * the console's first load does not carry it.
 */
import { useEffect, useState } from "react";

/** The QR code of `uri`, with a line while it is made (the secret beside it works without it). */
export function TotpQr({ uri, account }: { uri: string; account: string }) {
  const [src, setSrc] = useState<string | null>(null);
  const [failed, setFailed] = useState(false);
  useEffect(() => {
    let current = true;
    setSrc(null);
    setFailed(false);
    import("qrcode")
      .then((qr) => qr.toString(uri, { type: "svg", errorCorrectionLevel: "M", margin: 4 }))
      .then(
        (svg) => current && setSrc(`data:image/svg+xml;charset=utf-8,${encodeURIComponent(svg)}`),
        () => current && setFailed(true),
      );
    return () => {
      current = false;
    };
  }, [uri]);
  if (failed) return <p className="muted">The QR code could not be made: type the secret instead.</p>;
  if (!src) return <p className="muted">Making the QR code…</p>;
  return (
    <figure className="qr">
      <img src={src} width={200} height={200} alt={`QR code of the authenticator setup for ${account}`} />
      <figcaption>Scan it with your authenticator app, or type the secret below.</figcaption>
    </figure>
  );
}
