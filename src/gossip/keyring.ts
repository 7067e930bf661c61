// Every gossip packet is sealed with AES-GCM. Several keys are accepted, one (the primary)
// seals, so keys rotate without losing messages: add the new key, make it primary, drop the old.
import { createCipheriv, createDecipheriv, randomBytes } from 'node:crypto';
import { InvalidArgumentError } from '../core/errors.js';

const VERSION = 1;
const NONCE = 12;
const TAG = 16;

export class Keyring {
  private keys: Buffer[];
  /** packets no key could open (wrong key, forged, or corrupt) */
  dropped = 0;

  constructor(keys: Buffer[], primary = 0) {
    if (!keys.length) throw new InvalidArgumentError('a keyring needs at least one key');
    for (const k of keys) if (![16, 24, 32].includes(k.length)) throw new InvalidArgumentError(`gossip keys are 16, 24 or 32 bytes, not ${k.length}`);
    this.keys = [keys[primary]!, ...keys.filter((_, i) => i !== primary)];
  }

  static generateKey(): Buffer {
    return randomBytes(32);
  }

  get primary(): Buffer {
    return this.keys[0]!;
  }
  list(): Buffer[] {
    return [...this.keys];
  }

  /** Replaces the set of keys; `primary` must be one of them. */
  set(keys: Buffer[], primary: Buffer): void {
    const next = new Keyring(
      keys,
      Math.max(
        0,
        keys.findIndex((k) => k.equals(primary)),
      ),
    );
    if (!next.primary.equals(primary)) throw new InvalidArgumentError('the primary gossip key must be in the keyring');
    this.keys = next.keys;
  }

  seal(plain: Buffer, aad?: Buffer): Buffer {
    const nonce = randomBytes(NONCE);
    const c = createCipheriv(`aes-${this.primary.length * 8}-gcm`, this.primary, nonce) as import('node:crypto').CipherGCM;
    if (aad) c.setAAD(aad);
    const body = Buffer.concat([c.update(plain), c.final()]);
    return Buffer.concat([Buffer.from([VERSION]), nonce, body, c.getAuthTag()]);
  }

  /** The plaintext, or undefined (and counted) when no key opens it. */
  open(sealed: Buffer, aad?: Buffer): Buffer | undefined {
    if (sealed.length < 1 + NONCE + TAG || sealed[0] !== VERSION) {
      this.dropped++;
      return undefined;
    }
    const nonce = sealed.subarray(1, 1 + NONCE);
    const body = sealed.subarray(1 + NONCE, sealed.length - TAG);
    const tag = sealed.subarray(sealed.length - TAG);
    for (const k of this.keys) {
      try {
        const d = createDecipheriv(`aes-${k.length * 8}-gcm`, k, nonce) as import('node:crypto').DecipherGCM;
        if (aad) d.setAAD(aad);
        d.setAuthTag(tag);
        return Buffer.concat([d.update(body), d.final()]);
      } catch {
        // try the next key
      }
    }
    this.dropped++;
    return undefined;
  }
}
