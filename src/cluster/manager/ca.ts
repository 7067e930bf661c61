// The cluster's certificate authority: an ECDSA P-256 root, and node certificates with
// CN = node ID, OU = role, O = cluster ID, as swarmkit issues them.
import 'reflect-metadata';
import * as x509 from '@peculiar/x509';
import { X509Certificate, createPrivateKey, randomBytes, webcrypto } from 'node:crypto';
import { InvalidArgumentError } from '../../core/errors.js';

x509.cryptoProvider.set(webcrypto as unknown as Crypto);

export type Role = 'manager' | 'worker';
export const roleOU = (r: Role): string => `swarm-${r}`;
export const ouRole = (ou: string | undefined): Role | undefined => (ou === 'swarm-manager' ? 'manager' : ou === 'swarm-worker' ? 'worker' : undefined);

const ALG = { name: 'ECDSA', namedCurve: 'P-256', hash: 'SHA-256' } as const;
const HOUR = 3600_000;
export const DEFAULT_CERT_DAYS = 90;
const ROOT_YEARS = 20;

export interface KeyPairPem {
  certPem: string;
  keyPem: string;
}

async function newKeys(): Promise<CryptoKeyPair> {
  return (await webcrypto.subtle.generateKey(ALG, true, ['sign', 'verify'])) as CryptoKeyPair;
}

async function keyToPem(key: CryptoKey): Promise<string> {
  const der = Buffer.from(await webcrypto.subtle.exportKey('pkcs8', key));
  return createPrivateKey({ key: der, format: 'der', type: 'pkcs8' }).export({ type: 'pkcs8', format: 'pem' }).toString();
}

async function pemToKey(pem: string): Promise<CryptoKey> {
  const der = createPrivateKey(pem).export({ type: 'pkcs8', format: 'der' });
  return webcrypto.subtle.importKey('pkcs8', der, ALG, false, ['sign']);
}

const serial = (): string =>
  randomBytes(16)
    .toString('hex')
    .replace(/^[89a-f]/, '1');

export async function createRootCA(): Promise<KeyPairPem> {
  const keys = await newKeys();
  const now = Date.now();
  const cert = await x509.X509CertificateGenerator.createSelfSigned({
    serialNumber: serial(),
    name: 'CN=swarm-ca',
    notBefore: new Date(now - HOUR),
    notAfter: new Date(now + ROOT_YEARS * 365 * 24 * HOUR),
    signingAlgorithm: ALG,
    keys,
    extensions: [
      new x509.BasicConstraintsExtension(true, 1, true),
      new x509.KeyUsagesExtension(x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign | x509.KeyUsageFlags.digitalSignature, true),
      await x509.SubjectKeyIdentifierExtension.create(keys.publicKey),
    ],
  });
  return { certPem: cert.toString('pem'), keyPem: await keyToPem(keys.privateKey) };
}

/** A fresh key and a CSR for it (the joiner keeps the key; only the CSR travels). */
export async function createCsr(): Promise<{ csrPem: string; keyPem: string }> {
  const keys = await newKeys();
  const csr = await x509.Pkcs10CertificateRequestGenerator.create({ name: 'CN=swarm-node', keys, signingAlgorithm: ALG });
  return { csrPem: csr.toString('pem'), keyPem: await keyToPem(keys.privateKey) };
}

export class RootCA {
  private constructor(
    readonly certPem: string,
    private readonly cert: x509.X509Certificate,
    private readonly key: CryptoKey,
  ) {}

  static async load(pair: KeyPairPem): Promise<RootCA> {
    return new RootCA(pair.certPem, new x509.X509Certificate(pair.certPem), await pemToKey(pair.keyPem));
  }

  get der(): Buffer {
    return Buffer.from(this.cert.rawData);
  }

  /** Signs a CSR for a node; the subject comes from us, never from the CSR. */
  /**
   * A node certificate. `ips` become IP SANs: a manager's advertise address and loopback, which
   * etcd's peers and clients check (Go's TLS verifies an https://<ip> URL against IP SANs only).
   */
  async sign(csrPem: string, nodeId: string, role: Role, clusterId: string, days = DEFAULT_CERT_DAYS, ips: string[] = []): Promise<string> {
    let csr: x509.Pkcs10CertificateRequest;
    try {
      csr = new x509.Pkcs10CertificateRequest(csrPem);
    } catch {
      throw new InvalidArgumentError('invalid certificate signing request: not a PEM PKCS#10 request');
    }
    if (!(await csr.verify())) throw new InvalidArgumentError('invalid certificate signing request: bad signature');
    const now = Date.now();
    const cert = await x509.X509CertificateGenerator.create({
      serialNumber: serial(),
      subject: `CN=${nodeId}, OU=${roleOU(role)}, O=${clusterId}`,
      issuer: this.cert.subject,
      notBefore: new Date(now - HOUR),
      notAfter: new Date(now + days * 24 * HOUR),
      signingAlgorithm: ALG,
      publicKey: csr.publicKey,
      signingKey: this.key,
      extensions: [
        new x509.BasicConstraintsExtension(false, undefined, true),
        new x509.KeyUsagesExtension(x509.KeyUsageFlags.digitalSignature | x509.KeyUsageFlags.keyEncipherment, true),
        new x509.ExtendedKeyUsageExtension([x509.ExtendedKeyUsage.serverAuth, x509.ExtendedKeyUsage.clientAuth]),
        new x509.SubjectAlternativeNameExtension([
          { type: 'dns', value: roleOU(role) },
          { type: 'dns', value: nodeId },
          ...ips.map((ip) => ({ type: 'ip' as const, value: ip })),
        ]),
      ],
    });
    return cert.toString('pem');
  }

  /** A CRL naming these certificate serials (hex): etcd reads it on every connection it accepts. */
  async crl(serials: string[]): Promise<string> {
    const now = Date.now();
    const crl = await x509.X509CrlGenerator.create({
      issuer: this.cert.subject,
      thisUpdate: new Date(now - HOUR),
      signingAlgorithm: ALG,
      signingKey: this.key,
      // with a reason: an entry without extensions gets an empty list, which parsers refuse
      entries: serials.map((serialNumber) => ({ serialNumber, revocationDate: new Date(now), reason: x509.X509CrlReason.cessationOfOperation })),
    });
    // Go (etcd) takes PEM only under the "X509 CRL" label, and reads anything else as DER.
    return crl.toString('pem').replace(/-----(BEGIN|END) CRL-----/g, '-----$1 X509 CRL-----');
  }
}

export interface CertInfo {
  /** hex, as a CRL names it */
  serial: string;
  nodeId: string;
  role: Role | undefined;
  clusterId: string;
  notBefore: Date;
  notAfter: Date;
}

function subjectField(subject: string, key: string): string {
  return (
    subject
      .split('\n')
      .map((l) => l.split('='))
      .find(([k]) => k === key)?.[1] ?? ''
  );
}

export function certInfo(pem: string): CertInfo {
  const c = new X509Certificate(pem);
  return {
    serial: c.serialNumber.toUpperCase(),
    nodeId: subjectField(c.subject, 'CN'),
    role: ouRole(subjectField(c.subject, 'OU')),
    clusterId: subjectField(c.subject, 'O'),
    notBefore: new Date(c.validFrom),
    notAfter: new Date(c.validTo),
  };
}

export function pemToDer(pem: string): Buffer {
  return Buffer.from(new X509Certificate(pem).raw);
}

/** Random renewal point between 50% and 80% of a certificate's lifetime, as swarmkit does. */
export function renewalDelayMs(notBefore: Date, notAfter: Date, now = Date.now(), rand = Math.random): number {
  const life = notAfter.getTime() - notBefore.getTime();
  const at = notBefore.getTime() + life * (0.5 + 0.3 * rand());
  return Math.max(0, at - now);
}

/** What Docker reports as TLSInfo: the root PEM, and the issuer's subject and key (DER, base64). */
export function tlsInfo(caPem: string): { trustRoot: string; issuerSubject: string; issuerPublicKey: string } {
  const c = new x509.X509Certificate(caPem);
  return {
    trustRoot: caPem,
    issuerSubject: Buffer.from(c.subjectName.toArrayBuffer()).toString('base64'),
    issuerPublicKey: Buffer.from(c.publicKey.rawData).toString('base64'),
  };
}
