/**
 * Containment, ordered by the owner's kill mode (each step a local activity, a marker in history):
 *   emergency:  revoke -> issue replacement -> expire sessions -> user sessions -> verify dead
 *   graceful:   issue replacement -> overlap (durable timer) -> revoke -> expire -> ... -> verify
 *   quarantine: reversible quarantine -> expire sessions -> user sessions -> verify dead
 * A dry run asks every provider and changes nothing. Failures propagate to the caller.
 */
import { sleep } from '@temporalio/workflow';
import type { Duration } from '@temporalio/common';
import { LocalActivityProfiles } from './profiles';
import type { Run } from './run';
import type { KillSwitchResult, OwnerRef } from '../contracts/run';
import { critical, verify } from './steps';

export async function contain(
  run: Run,
  o: OwnerRef,
  dryRun: boolean,
  quarantineInstead = false,
): Promise<void> {
  const { workflowId, detection, timeline, result } = run;
  const quarantine = o.quarantine || quarantineInstead;
  const req = { workflowId, system: o.system, detection, dryRun, mode: o.mode, quarantine };
  const graceful = o.mode === 'graceful' && o.replacement && !quarantine;
  const rotation: NonNullable<KillSwitchResult['rotation']> = {
    mode: quarantine ? 'quarantine' : o.mode,
    newValueDelivered: false,
    note: '',
  };
  result.rotation = rotation;
  const notes: string[] = [];

  const issue = async () => {
    run.enter('issuing_replacement');
    const issued = await critical.issueReplacement.executeWithOptions(
      { ...LocalActivityProfiles.critical, summary: `Issue a replacement for ${o.system} (${o.sink})` },
      [req],
    );
    if (issued.issuedAt) timeline.replacementIssuedAt = issued.issuedAt;
    rotation.newValueDelivered = issued.delivered;
    if (issued.sinkRef) rotation.sinkRef = issued.sinkRef;
    notes.push(issued.note);
  };
  const revoke = async () => {
    run.enter('revoking');
    const what = quarantine ? 'Quarantine' : 'Revoke';
    const revoked = await critical.revokeCredential.executeWithOptions(
      {
        ...LocalActivityProfiles.critical,
        summary: `${what} the leaked ${detection.credentialType} in ${o.system}`,
      },
      [req],
    );
    if (revoked.revokedAt) timeline.revokedAt = revoked.revokedAt;
    notes.push(revoked.note);
  };

  if (graceful) {
    await issue();
    // Both values work while the applications pick up the replacement; the timer is durable.
    run.enter('overlap');
    if (!dryRun) {
      run.progress();
      await sleep(o.overlap as Duration);
    }
    await revoke();
  } else {
    await revoke();
    if (o.replacement && !quarantine) await issue();
  }
  rotation.note = notes.join('; ');
  const done = [timeline.revokedAt, timeline.replacementIssuedAt].filter((t): t is string => !!t).sort();
  if (done.length) timeline.rotatedAt = done[done.length - 1];

  run.enter('expiring_sessions');
  const sessions = await critical.expireSessions.executeWithOptions(
    { ...LocalActivityProfiles.critical, summary: `End the sessions of the credential in ${o.system}` },
    [req],
  );
  if (sessions.sessionsExpiredAt) timeline.sessionsExpiredAt = sessions.sessionsExpiredAt;
  result.sessions = { terminated: dryRun ? (sessions.wouldTerminate ?? 0) : sessions.terminated };

  if (o.userSessionTargets > 0) {
    run.enter('expiring_user_sessions');
    const users = await critical.expireUserSessions.executeWithOptions(
      {
        ...LocalActivityProfiles.critical,
        summary: `End the app sessions of the users tied to it (${o.userSessionTargets} target(s))`,
      },
      [req],
    );
    result.userSessions = { expired: users.expired };
  }

  run.enter('verifying');
  const verified = await verify.verifyDead.executeWithOptions(
    { ...LocalActivityProfiles.verify, summary: `Prove the leaked value is dead in ${o.system}` },
    [req],
  );
  if (verified.verifiedDeadAt) timeline.verifiedDeadAt = verified.verifiedDeadAt;
  result.verification = { method: verified.method };
}

/** A credential an earlier run contained: prove it is still dead. */
export async function reverify(run: Run, o: OwnerRef): Promise<void> {
  run.enter('verifying');
  const verified = await verify.verifyDead.executeWithOptions(
    { ...LocalActivityProfiles.verify, summary: `Prove the leaked value is still dead in ${o.system}` },
    [{ workflowId: run.workflowId, system: o.system, detection: run.detection }],
  );
  if (verified.verifiedDeadAt) run.timeline.verifiedDeadAt = verified.verifiedDeadAt;
  run.result.verification = { method: verified.method };
}
