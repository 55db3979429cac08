import fs from 'node:fs';
import path from 'node:path';
import { Kafka, logLevel } from 'kafkajs';
import { findJava } from './java.js';
import { mvn } from './maven.js';
import { logFile, run, runningPid, startDetached, type ManagedProcess } from './processes.js';
import { KAFKA_VERSION, stackDir, type StackSettings } from './settings.js';

type KafkaSettings = StackSettings['kafka'];

export const kafkaProcess = (s: KafkaSettings): ManagedProcess => ({
  name: 'kafka',
  dir: s.dir,
  marker: `-Dshoal.stack=kafka:${s.dir}`,
});

const libsDir = (s: KafkaSettings) => path.join(s.dir, `libs-${KAFKA_VERSION}`);

/** Collects Kafka's runtime jars from Maven Central (once; the marker file records completion). */
export function installKafka(s: KafkaSettings, log: (line: string) => void): void {
  const libs = libsDir(s);
  const done = path.join(libs, '.complete');
  if (fs.existsSync(done)) return;
  log(`kafka: collecting Apache Kafka ${KAFKA_VERSION} jars from Maven Central into ${libs}`);
  fs.rmSync(libs, { recursive: true, force: true });
  mvn([
    '-f',
    path.join(stackDir, 'pom.xml'),
    'dependency:copy-dependencies',
    '-DincludeScope=runtime',
    `-DoutputDirectory=${libs}`,
  ]);
  fs.writeFileSync(done, `${fs.readdirSync(libs).length} jars\n`);
}

function serverProperties(s: KafkaSettings): string {
  return [
    'process.roles=broker,controller',
    'node.id=1',
    `controller.quorum.voters=1@127.0.0.1:${s.controllerPort}`,
    `listeners=PLAINTEXT://127.0.0.1:${s.port},CONTROLLER://127.0.0.1:${s.controllerPort}`,
    `advertised.listeners=PLAINTEXT://127.0.0.1:${s.port}`,
    'controller.listener.names=CONTROLLER',
    'inter.broker.listener.name=PLAINTEXT',
    'listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT',
    `log.dirs=${path.join(s.dir, 'data')}`,
    'num.partitions=1',
    'auto.create.topics.enable=false',
    'group.initial.rebalance.delay.ms=0',
    // lets failover tests use short sessions (a SIGKILLed member leaves the group in ~2 s)
    'group.min.session.timeout.ms=1000',
    // single node: every internal topic has one replica
    'offsets.topic.replication.factor=1',
    'offsets.topic.num.partitions=10',
    'transaction.state.log.replication.factor=1',
    'transaction.state.log.min.isr=1',
    'share.coordinator.state.topic.replication.factor=1',
    'share.coordinator.state.topic.min.isr=1',
    '',
  ].join('\n');
}

const log4j2 = [
  'status = warn',
  'appender.out.type = Console',
  'appender.out.name = STDOUT',
  'appender.out.layout.type = PatternLayout',
  'appender.out.layout.pattern = [%d] %p %m (%c)%n',
  'rootLogger.level = INFO',
  'rootLogger.appenderRef.out.ref = STDOUT',
  'logger.statechange.name = state.change.logger',
  'logger.statechange.level = WARN',
  'logger.request.name = kafka.request.logger',
  'logger.request.level = WARN',
  // a line or more per partition for every topic created or deleted (the tests create thousands):
  // tens of MB a run, and the broker's CPU to write them
  'logger.logs.name = kafka.log',
  'logger.logs.level = WARN',
  'logger.storage.name = org.apache.kafka.storage.internals.log',
  'logger.storage.level = WARN',
  'logger.partition.name = kafka.cluster.Partition',
  'logger.partition.level = WARN',
  'logger.replication.name = org.apache.kafka.controller.ReplicationControlManager',
  'logger.replication.level = WARN',
  'logger.leaders.name = org.apache.kafka.controller.PartitionChangeBuilder',
  'logger.leaders.level = WARN',
  'logger.configs.name = kafka.server.metadata.DynamicConfigPublisher',
  'logger.configs.level = WARN',
  '',
].join('\n');

export function startKafka(s: KafkaSettings, log: (line: string) => void): number {
  const java = findJava(17);
  if (!java)
    throw new Error(
      'kafka: needs Java 17 or newer; none found on PATH, in JAVA_HOME or under /usr/lib/jvm (apt-get install openjdk-17-jre-headless)',
    );
  const classpath = `${libsDir(s)}/*`;
  const props = path.join(s.dir, 'server.properties');
  const log4jFile = path.join(s.dir, 'log4j2.properties');
  fs.mkdirSync(s.dir, { recursive: true });
  fs.writeFileSync(props, serverProperties(s));
  fs.writeFileSync(log4jFile, log4j2);
  if (!fs.existsSync(path.join(s.dir, 'data', 'meta.properties'))) {
    const clusterId = run(java.bin, [
      '-cp',
      classpath,
      'kafka.tools.StorageTool',
      'random-uuid',
    ]).trim();
    log(`kafka: formatting storage (cluster ${clusterId})`);
    run(java.bin, [
      '-cp',
      classpath,
      `-Dlog4j2.configurationFile=${log4jFile}`,
      'kafka.tools.StorageTool',
      'format',
      '-t',
      clusterId,
      '-c',
      props,
    ]);
  }
  return startDetached(kafkaProcess(s), java.bin, [
    kafkaProcess(s).marker,
    '-Xms256m',
    '-Xmx512m',
    '-XX:+UseG1GC',
    '-XX:MaxGCPauseMillis=20',
    '-Djava.awt.headless=true',
    `-Dlog4j2.configurationFile=${log4jFile}`,
    '-cp',
    classpath,
    'kafka.Kafka',
    props,
  ]);
}

/** A real metadata request: the broker is up when it names itself as the cluster's controller. */
export async function kafkaAnswers(brokers: string[]): Promise<boolean> {
  const admin = new Kafka({
    brokers,
    clientId: 'shoal-stack-probe',
    logLevel: logLevel.NOTHING,
    retry: { retries: 0 },
    connectionTimeout: 1000,
    requestTimeout: 2000,
  }).admin();
  try {
    await admin.connect();
    const cluster = await admin.describeCluster();
    return cluster.brokers.length > 0 && cluster.controller !== null;
  } catch {
    return false;
  } finally {
    await admin.disconnect().catch(() => undefined);
  }
}

export const kafkaLog = (s: KafkaSettings) => logFile(kafkaProcess(s));
export const kafkaPid = (s: KafkaSettings) => runningPid(kafkaProcess(s));
